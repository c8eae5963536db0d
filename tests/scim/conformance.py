"""Runs scim2-tester's checks against a SCIM 2.0 server and prints them as JSON.

    python conformance.py BASE_URL TOKEN
    # BASE_URL like http://127.0.0.1:PORT/scim/v2/okta

Prints one JSON document on stdout:

    {"tester_version": "0.5.2",
     "results": [{"title": ..., "status": "SUCCESS", "reason": ...,
                  "description": ..., "resource_type": "User" | null,
                  "tags": [...]}, ...]}

and exits 0 whenever the checks ran, whatever they found: judging the results
is the Rust test's job. An unreachable server is a result too (ERROR checks
whose reason names the network error), not a crash. Non-zero only when the
harness itself fails (bad arguments, missing package, the overall deadline);
then the last line on stderr says why.
"""

import json
import signal
import sys
from importlib.metadata import version

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server
from scim2_tester.checkers import core_schemas_validation
from scim2_tester.utils import CheckConfig, CheckContext

# Per request; a whole run is some hundred requests on a local server.
REQUEST_TIMEOUT = 10
# The whole run. Raised as a BaseException: each check catches Exception and
# would turn a plain one into an ERROR result and carry on.
RUN_DEADLINE = 300


class Deadline(BaseException):
    pass


def on_alarm(signum, frame):
    raise Deadline(f"conformance run exceeded {RUN_DEADLINE} s")


def first_line(text):
    # A check's description is its docstring, RST pull-quotes of the RFC
    # included; its summary line is enough next to the reason.
    return text.strip().splitlines()[0] if text else None


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: conformance.py BASE_URL TOKEN")
    base_url, token = sys.argv[1], sys.argv[2]

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(RUN_DEADLINE)

    # trust_env=False: an HTTP(S)_PROXY in the environment must not divert
    # requests meant for the local server; nothing but BASE_URL is contacted.
    http = httpx2.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT,
        trust_env=False,
    )
    # No client.discover(): check_server queries the discovery endpoints
    # itself, reports on them, and builds the resource models from what the
    # server publishes (a discover() failing first would be a crash, not a result).
    client = SyncSCIMClient(http)

    # Every check catches its own exceptions (raise_exceptions=False) and
    # deletes what it created. Results keep the library's order.
    results = check_server(client, raise_exceptions=False)
    # The one checker check_server does not call: the /Schemas list must hold
    # the Schema, ResourceType and ServiceProviderConfig schemas.
    results += core_schemas_validation(CheckContext(client, CheckConfig()))

    signal.alarm(0)
    doc = {
        "tester_version": version("scim2-tester"),
        "results": [
            {
                "title": r.title,
                "status": r.status.name,
                "reason": r.reason,
                "description": first_line(r.description),
                # Users and Groups run the same checks under the same titles.
                "resource_type": r.resource_type,
                "tags": sorted(r.tags),
            }
            for r in results
        ],
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    try:
        main()
    except Deadline as exc:
        sys.exit(f"error: {exc}")
