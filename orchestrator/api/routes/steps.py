from flask import Blueprint

bp = Blueprint("steps", __name__)
