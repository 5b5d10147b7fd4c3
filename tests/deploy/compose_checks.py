"""Checks of the compose stack that need no Docker engine: `from compose_checks import ...`.

Each returns a list of problems (empty: fine), so a test can show it on the real files and show it
failing on a broken copy. tests/ is not a package: pytest puts tests/ itself on sys.path.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO as ROOT
SECRETS = "/run/hashfleet-secrets"
# Every text a user may copy a command from.
DOCUMENTS = ["README.md", "docs/deployment.md", "docs/health.md", ".env.example", "docker-compose.yml", "deploy/secrets/init-secrets.sh",
             "deploy/influxdb/hashfleet-tokens.sh", "deploy/grafana/tls/README.md"]
# Programs that, given to `docker compose run SERVICE ...` of a service with an entrypoint, show the
# author meant to replace the entrypoint: arguments only replace the service's `command`.
_PROGRAMS = {"cat", "sh", "bash", "ash", "ls", "env", "head", "tail", "grep", "influx", "mosquitto_passwd",
             "mosquitto_sub", "mosquitto_pub", "python", "hashfleet"}


def dockerfile_of(service: dict) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    build = build if isinstance(build, dict) else {"context": build}
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def shared_build_tags(services: dict[str, dict]) -> list[str]:
    """An image tag built by two services (buildx bake exports both at once: "already exists"), or used
    by a service that does not build it and may pull it (no registry has hashfleet's local images)."""
    problems = []
    builders: dict[str, list[str]] = {}
    for name, service in services.items():
        if "build" in service:
            builders.setdefault(service.get("image", f"<project>-{name}"), []).append(name)
    for image, names in builders.items():
        if len(names) > 1:
            problems.append(f"{image} is built by {', '.join(sorted(names))}: build it in one service only")
    for name, service in services.items():
        image = service.get("image")
        if "build" not in service and image in builders and service.get("pull_policy") != "never":
            problems.append(f"{name} uses {image} (built by {builders[image][0]}) without `pull_policy: never`")
    return problems


def _command_lines(text: str) -> Iterator[str]:
    """Every `docker compose run|exec ...` command in a text, one per string, markdown and comments stripped."""
    for match in re.finditer(r"docker compose (?:run|exec) +[^`\s][^`\n]*(?:\\\n[^`\n]*)*", text):
        yield re.sub(r"\\\n\s*", " ", match.group(0)).strip().rstrip(".,;)'\"")


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for every `docker compose run/exec` the documents show."""
    return [(name, line) for name in DOCUMENTS for line in _command_lines((ROOT / name).read_text())]


def parse_compose_command(line: str) -> tuple[str, dict[str, str | bool], str, list[str]]:
    """`docker compose run|exec [OPTIONS] SERVICE [ARGS...]` -> (verb, options, service, args)."""
    words = shlex.split(line, comments=True)
    assert words[:2] == ["docker", "compose"], line
    verb, rest = words[2], words[3:]
    options: dict[str, str | bool] = {}
    with_value = {"--entrypoint", "-e", "--env", "-u", "--user", "-w", "--workdir", "--name", "-p", "--publish",
                  "-v", "--volume", "-l", "--label", "--index"}
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        name, eq, value = option.partition("=")
        if eq:
            options[name] = value
        elif name in with_value:
            options[name] = rest.pop(0)
        else:
            options[name] = True
    return verb, options, rest[0], rest[1:]


def command_problems(line: str, services: dict[str, dict]) -> list[str]:
    """What makes a documented `docker compose run/exec` fail as written, judged from the service definitions."""
    try:
        verb, options, name, args = parse_compose_command(line)
    except (ValueError, IndexError) as e:
        return [f"{line!r}: cannot parse ({e})"]
    service = services.get(name)
    if service is None:
        return [f"{line!r}: no service {name!r}"]
    problems = []
    if verb == "run" and args and "--entrypoint" not in options and service.get("entrypoint"):
        program = args[0].rsplit("/", 1)[-1]
        if args[0].startswith("/") or program in _PROGRAMS:
            problems.append(f"{line!r}: `run` arguments replace {name}'s command, not its entrypoint "
                            f"{service['entrypoint']}: {args[0]} would be an argument of it")
    if verb == "exec" and args and args[0].startswith("/"):
        dockerfile = dockerfile_of(service) or dockerfile_of(next(
            (s for s in services.values() if s.get("image") == service.get("image") and "build" in s), {}))
        if dockerfile is None or not re.search(rf"^COPY .* {re.escape(args[0])}$", dockerfile.read_text(), re.M):
            problems.append(f"{line!r}: {args[0]} is not put into {name}'s image by its Dockerfile")
    if any(re.search(r"\$\((docker|cat)\b", arg) for arg in args):
        problems.append(f"{line!r}: puts a secret on a command line (visible to `ps` on the host)")
    return problems


def passwords_on_command_lines(services: dict[str, dict]) -> list[str]:
    """A secret on the command line of a healthcheck, command or entrypoint (every `ps` on the host sees it)."""
    problems = []
    for name, service in services.items():
        for key in ("command", "entrypoint"):
            parts = service.get(key) or []
            problems += [f"{name} {key}: {p}" for p in ([parts] if isinstance(parts, str) else parts)
                         if _secret_argument(str(p))]
        test = (service.get("healthcheck") or {}).get("test") or []
        problems += [f"{name} healthcheck: {p}" for p in ([test] if isinstance(test, str) else test)
                     if _secret_argument(str(p))]
    return problems


def _secret_argument(text: str) -> bool:
    return bool(re.search(r"(^|\s)(-P|--pw|--password|--token)(\s|=|$)|\$\$?\(cat |" + re.escape(SECRETS), text))


def scripts_with_secret_arguments() -> list[str]:
    """Lines of the stack's scripts that pass a secret as an argument (`mosquitto_passwd -b`, `-P`, `-t`)."""
    problems = []
    for path in (ROOT / "deploy").rglob("*.sh"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"mosquitto_passwd\b.*\s-b\b|mosquitto_(sub|pub)\b.*\s-P\b|\binflux\b.*\s(-t|--token)\b",
                         code):
                problems.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return problems
