from flask import Blueprint

bp = Blueprint("streams", __name__)
