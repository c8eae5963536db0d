#!/usr/bin/env python3
"""Check a request against authzd, as a sibling service would.

Authenticates the HTTP Authorization header the service received, then asks
whether that user may perform one action in an account:

    python client.py --target 127.0.0.1:50051 --caller-key "$CALLER_KEY" \
        --authorization "Basic $(printf alice:secret | base64)" \
        --account acme --action listImages

or first trades a password (from $AUTHZD_USER_PASSWORD) for a bearer token,
as an interactive client would once per session, and checks with the token:

    AUTHZD_USER_PASSWORD=secret python client.py --caller-key "$CALLER_KEY" \
        --login alice --action listImages

Exit status: 0 allowed, 1 denied, 2 error (the gRPC status code is printed).
Needs grpcio and grpcio-tools (requirements.txt). The Python stubs are
generated from authzd's .proto files into a temporary directory at start-up;
a real service would generate them once at build time instead.
"""
import argparse
import importlib.resources
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import grpc
from grpc_tools import protoc

# authzd's proto/ directory: ../../proto from this file in the authzd repository.
DEFAULT_PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)  # 1 means "denied"


def load_stubs(proto_dir: Path, out_dir: str):
    """Generates authz/v1/*_pb2*.py into out_dir and imports the ones used here."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    files = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.glob("authz/v1/*.proto"))
    if not files:
        fail(f"no authz/v1/*.proto under {proto_dir}")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{well_known}",
                      f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *files])
    if rc != 0:
        fail(f"protoc failed on {proto_dir} (exit {rc})")
    sys.path.insert(0, out_dir)  # the generated modules import each other as authz.v1.*
    from authz.v1 import auth_pb2, auth_pb2_grpc, common_pb2, tokens_pb2, tokens_pb2_grpc
    return auth_pb2, auth_pb2_grpc, common_pb2, tokens_pb2, tokens_pb2_grpc


def open_channel(args) -> grpc.Channel:
    if not (args.ca_cert or args.client_cert):
        return grpc.insecure_channel(args.target)  # authzd without TLS

    def read(path):
        return Path(path).read_bytes() if path else None

    # TLS; with --client-cert/--client-key too, mutual TLS.
    creds = grpc.ssl_channel_credentials(root_certificates=read(args.ca_cert),
                                         private_key=read(args.client_key),
                                         certificate_chain=read(args.client_cert))
    return grpc.secure_channel(args.target, creds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="authzd host:port")
    parser.add_argument("--caller-key", default=os.environ.get("AUTHZD_CALLER_KEY", ""),
                        help="this service's caller key (default: $AUTHZD_CALLER_KEY)")
    credentials = parser.add_mutually_exclusive_group(required=True)
    credentials.add_argument("--authorization",
                             help="the HTTP Authorization header value received, e.g. 'Basic ...'")
    credentials.add_argument("--login", metavar="USERNAME",
                             help="obtain a bearer token for USERNAME (password from "
                                  "$AUTHZD_USER_PASSWORD) and check with it")
    parser.add_argument("--account", default="",
                        help="account context (x-anchore-account); default: the user's own")
    parser.add_argument("--action", required=True, help="an action name, e.g. listImages")
    parser.add_argument("--client-address", default="",
                        help="the end user's IP address: failed checks are rate-limited per address")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    parser.add_argument("--proto-dir", type=Path, default=DEFAULT_PROTO_DIR)
    parser.add_argument("--ca-cert", help="PEM CA bundle: connect with TLS")
    parser.add_argument("--client-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--client-key", help="PEM client private key (mutual TLS)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="authzd-stubs-") as out_dir:
        pb, pb_grpc, common, tokens, tokens_grpc = load_stubs(args.proto_dir, out_dir)

    # Every AuthService call carries the caller key; the credentials being
    # checked travel in the request body.
    metadata = [("authorization", f"Bearer {args.caller_key}")] if args.caller_key else []
    authorization = args.authorization
    rpc = "CreateToken"
    try:
        with open_channel(args) as channel:
            if args.login:
                # The password grant: one argon2 verification now, none on
                # the calls made with the token. No caller key needed.
                password = os.environ.get("AUTHZD_USER_PASSWORD", "")
                grant = tokens.CreateTokenRequest(
                    password=pb.PasswordCredentials(username=args.login, password=password),
                    client_address=args.client_address)
                # The caller key vouches for client_address.
                issued = tokens_grpc.TokenServiceStub(channel).CreateToken(
                    grant, metadata=metadata, timeout=args.timeout)
                print(f"token obtained: expires in {issued.expires_in} s")
                authorization = f"Bearer {issued.access_token}"
            rpc = "Authenticate"
            stub = pb_grpc.AuthServiceStub(channel)
            principal = stub.Authenticate(
                pb.AuthenticateRequest(authorization=authorization,
                                       client_address=args.client_address),
                metadata=metadata, timeout=args.timeout).principal
            print(f"authenticated: {principal.username} (account {principal.account})")

            # Authorize the user just authenticated. By username, so the
            # password is not hashed a second time -- except for API keys:
            # pass the key again so authzd applies the API-key restriction.
            rpc = "Authorize"
            if principal.credential_kind == common.CREDENTIAL_KIND_API_KEY:
                request = pb.AuthorizeRequest(authorization=authorization)
            else:
                request = pb.AuthorizeRequest(username=principal.username)
            request.client_address = args.client_address
            request.actions.append(args.action)
            context = [("x-anchore-account", args.account)] if args.account else []
            reply = stub.Authorize(request, metadata=metadata + context, timeout=args.timeout)
    except grpc.RpcError as err:
        # UNAUTHENTICATED: bad credentials or caller key; UNAVAILABLE: authzd
        # down or not ready; INVALID_ARGUMENT: e.g. a malformed account name;
        # RESOURCE_EXHAUSTED: too many failures from this client address
        # (the status details carry a google.rpc.RetryInfo delay: a web
        # service would answer 429 with Retry-After).
        fail(f"{rpc}: {err.code().name}: {err.details()}")
    except OSError as err:  # an unreadable --ca-cert/--client-cert/--client-key
        fail(str(err))

    (decision,) = reply.decisions  # one per requested action
    why = pb.DecisionReason.Name(decision.reason)
    if decision.role:
        why += f" {decision.role}" + (f" via group {decision.group}" if decision.group else "")
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    print(f"authorize {decision.action} in {reply.account}: {verdict} ({why})")
    return 0 if reply.allowed else 1


if __name__ == "__main__":
    sys.exit(main())
