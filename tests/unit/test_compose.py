"""Static checks of docker-compose.yml, the Dockerfile and the commands and settings the README and docs/ show:
no Docker needed.

They hold the deployment files and the documentation to the code: every command must parse with the real CLI
parser and every environment variable must be one that Settings reads, so a renamed flag or setting fails here,
not in production. (tests/unit/test_docs.py holds the rest of what the pages show: commands in prose and code,
scripts' options, paths and links.)
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from orchestrator.settings import Settings
from tests.support.pages import CONFIGURATION, README, pages, parse_cli, settings_variables

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_VARIABLES = {"DATABASE_URL", "REDIS_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"}
ORCHESTRATOR_SERVICES = ("migrate", "api", "worker", "scheduler", "sandbox")
CREDENTIALS = {
    "DATABASE_URL",
    "ORCHESTRATOR_DATABASE_URL",
    "REDIS_URL",
    "ORCHESTRATOR_REDIS_URL",
    "OPENAI_API_KEY",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def dependencies(service: dict) -> dict:
    depends_on = service.get("depends_on", {})
    if isinstance(depends_on, list):
        return {name: {"condition": "service_started"} for name in depends_on}
    return depends_on


def healthcheck_test(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_the_compose_file_defines_the_datastores_and_the_orchestrator_processes(services):
    assert set(services) >= {"postgres", "redis", *ORCHESTRATOR_SERVICES}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")


def test_the_orchestrator_services_share_one_image_built_from_this_repository(services):
    images = {(services[name].get("build"), services[name]["image"]) for name in ORCHESTRATOR_SERVICES}
    assert images == {(".", "orchestrator:local")}


@pytest.mark.parametrize("name", ORCHESTRATOR_SERVICES)
def test_every_orchestrator_command_parses_with_the_real_cli_parser(services, name):
    command = command_of(services[name])
    assert command[:2] == ["orchestrator", name]
    parse_cli(command[1:])


def test_the_commands_run_the_documented_roles(services):
    api = parse_cli(command_of(services["api"])[1:])
    worker = parse_cli(command_of(services["worker"])[1:])
    assert (api.host, api.port) == ("0.0.0.0", 8000)
    assert worker.concurrency >= 100  # set for real models: a turn mostly waits on the model


@pytest.mark.parametrize("name", ORCHESTRATOR_SERVICES)
def test_every_environment_variable_is_one_that_settings_reads(services, name):
    unknown = set(services[name]["environment"]) - settings_variables()
    assert not unknown, f"{name} sets variables Settings never reads: {sorted(unknown)}"


def test_the_upstream_variables_settings_reads_are_exactly_the_four_without_a_prefix():
    unprefixed = {name for name in settings_variables() if not name.startswith("ORCHESTRATOR_")}
    assert unprefixed == UPSTREAM_VARIABLES


def test_the_openai_variables_pass_through_unset_rather_than_empty(services):
    environment = services["api"]["environment"]
    assert environment["OPENAI_BASE_URL"] is None
    assert environment["OPENAI_API_KEY"] is None


def test_the_database_and_redis_urls_point_at_the_compose_services(services):
    environment = services["api"]["environment"]
    postgres = services["postgres"]["environment"]
    database = make_url(environment["DATABASE_URL"])
    assert database.drivername == "postgresql+psycopg"
    assert (database.host, database.port) == ("postgres", 5432)
    assert (database.username, database.password, database.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert environment["REDIS_URL"].startswith("redis://redis:6379/")


def test_postgres_redis_and_the_api_have_healthchecks(services):
    assert "pg_isready" in healthcheck_test(services["postgres"])
    assert "redis-cli ping" in healthcheck_test(services["redis"])
    assert "/healthz" in healthcheck_test(services["api"])


def test_the_api_healthcheck_uses_python_because_the_slim_image_has_no_curl(services):
    test = services["api"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "healthcheck", "exec")
    assert "http://127.0.0.1:8000/healthz" in test[3]


def test_the_api_publishes_the_port_it_serves_on(services):
    api = parse_cli(command_of(services["api"])[1:])
    assert services["api"]["ports"] == [f"{api.port}:{api.port}"]


def test_the_worker_can_be_scaled_because_it_has_no_fixed_name_or_host_port(services):
    assert "container_name" not in services["worker"]
    assert "ports" not in services["worker"]
    assert "stop_grace_period" in services["worker"]


def test_there_is_exactly_one_scheduler(services):
    schedulers = [
        name for name, service in services.items() if command_of(service)[:2] == ["orchestrator", "scheduler"]
    ]
    assert schedulers == ["scheduler"]
    assert services["scheduler"].get("deploy", {}).get("replicas", 1) == 1


@pytest.mark.parametrize("name", ["api", "worker", "scheduler"])
def test_the_processes_start_only_after_migrations_succeed_and_redis_is_healthy(services, name):
    depends_on = dependencies(services[name])
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["redis"]["condition"] == "service_healthy"


def test_migrate_is_a_one_shot_that_waits_for_a_healthy_postgres(services):
    migrate = services["migrate"]
    assert dependencies(migrate)["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


def test_redis_persists_and_never_evicts_keys(services):
    command = command_of(services["redis"])
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_the_datastores_keep_their_data_in_named_volumes(compose, services):
    for name in ("postgres", "redis"):
        volume = services[name]["volumes"][0].split(":")[0]
        assert volume in compose["volumes"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def test_the_image_is_python_3_11_slim_and_installs_the_package():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = [arguments for instruction, arguments in instructions if instruction == "RUN"]
    assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", run) for run in runs)
    copied = {arguments.split()[0] for instruction, arguments in instructions if instruction == "COPY"}
    assert {"pyproject.toml", "orchestrator", "workers", "migrations"} <= copied


def test_the_image_runs_the_orchestrator_script_as_a_non_root_user():
    instructions = dict(dockerfile_instructions())
    launch = json.loads(instructions.get("ENTRYPOINT") or instructions["CMD"])
    assert launch[0] == "orchestrator"
    assert instructions["USER"] not in {"root", "0"}


def documented_compose_runs() -> list[tuple[str, str, list[str]]]:
    """(page, service, orchestrator argv) for every `docker compose run … SERVICE orchestrator …` in the pages."""
    pattern = re.compile(r"docker compose run (?:--?\S+ )*(\S+) orchestrator ([^`\n]+)")
    return [
        (page, match.group(1), shlex.split(match.group(2), comments=True))
        for page, text in pages().items()
        for match in pattern.finditer(text)
    ]


def test_every_documented_compose_run_parses_and_runs_a_real_service(services):
    runs = documented_compose_runs()
    assert any(page == README and argv[:2] == ["keys", "create"] for page, _, argv in runs)
    for page, service, argv in runs:
        assert service in services, f"{page}: `docker compose run {service}` names no compose service"
        parse_cli(argv)


def table_variables(text: str) -> set[str]:
    """The variables in the first column of a page's tables."""
    return set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.MULTILINE))


def test_the_configuration_page_lists_every_setting():
    documented = table_variables(pages()[CONFIGURATION])
    primary = {name for name in settings_variables() if not name.startswith("ORCHESTRATOR_")} | {
        "ORCHESTRATOR_" + name.upper()
        for name, field in Settings.model_fields.items()
        if field.validation_alias is None
    }
    assert primary - documented == set()


@pytest.mark.parametrize("page", sorted(pages()))
def test_every_variable_a_table_documents_is_one_that_settings_reads(page):
    assert table_variables(pages()[page]) - settings_variables() == set()


def test_the_sandbox_holds_no_database_redis_or_upstream_credentials(services):
    sandbox = services["sandbox"]
    assert not CREDENTIALS & set(sandbox["environment"])
    assert not {"postgres", "redis", "migrate"} & set(dependencies(sandbox))
    assert "ports" not in sandbox  # reachable on the compose network only


def test_the_workers_call_the_sandbox_service_with_its_token(services):
    sandbox = parse_cli(command_of(services["sandbox"])[1:])
    worker = services["worker"]["environment"]
    assert worker["ORCHESTRATOR_SANDBOX_URL"].endswith(f"http://sandbox:{sandbox.port}}}")
    assert (
        worker["ORCHESTRATOR_SANDBOX_TOKEN"]
        == services["sandbox"]["environment"]["ORCHESTRATOR_SANDBOX_TOKEN"]
    )


def test_every_code_setting_reaches_the_sandbox_and_the_workers(services):
    code = {"ORCHESTRATOR_" + name.upper() for name in Settings.model_fields if name.startswith("code_")}
    assert code <= set(services["sandbox"]["environment"])
    assert code <= set(services["worker"]["environment"])


def test_the_sandbox_runs_the_image_s_own_python_and_keeps_its_state_in_a_volume(compose, services):
    environment = services["sandbox"]["environment"]
    assert environment["ORCHESTRATOR_CODE_PYTHON"].endswith(":-/opt/sandbox-python/bin/python}")
    runs = " ".join(arguments for instruction, arguments in dockerfile_instructions() if instruction == "RUN")
    assert "python -m venv /opt/sandbox-python" in runs
    volume, _, path = services["sandbox"]["volumes"][0].partition(":")
    assert volume in compose["volumes"] and path.split()[0] == environment["ORCHESTRATOR_CODE_STATE_DIR"]


def test_the_sandbox_may_create_the_namespaces_its_jail_needs_and_is_health_checked(services):
    sandbox = parse_cli(command_of(services["sandbox"])[1:])
    assert set(services["sandbox"]["security_opt"]) >= {"seccomp=unconfined", "apparmor=unconfined"}
    assert "systempaths=unconfined" in services["sandbox"]["security_opt"]
    assert f"http://127.0.0.1:{sandbox.port}/healthz" in healthcheck_test(services["sandbox"])


def test_the_image_installs_bubblewrap():
    runs = [arguments for instruction, arguments in dockerfile_instructions() if instruction == "RUN"]
    assert any(re.search(r"apt-get install .*\bbubblewrap\b", run) for run in runs)


def test_the_image_can_hold_the_local_model_and_then_exports_its_query_graph_as_its_user():
    instructions = dockerfile_instructions()
    assert ("ARG", "LOCAL_EMBEDDINGS=0") in instructions
    runs = [
        (index, arguments)
        for index, (instruction, arguments) in enumerate(instructions)
        if instruction == "RUN"
    ]
    assert any("local-embeddings" in arguments and "$LOCAL_EMBEDDINGS" in arguments for _, arguments in runs)
    exports = [
        index
        for index, arguments in runs
        if "python -m orchestrator.providers.query_graph_export" in arguments
    ]
    # After USER: the file lands in the runtime user's cache directory, the one its processes read.
    assert exports and exports[0] > instructions.index(("USER", "orchestrator"))
    assert "$LOCAL_EMBEDDINGS" in instructions[exports[0]][1]
    assert (ROOT / "orchestrator" / "providers" / "query_graph.py").is_file()
