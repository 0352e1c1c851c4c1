"""`wasinfer keys generate` and `wasinfer policy test`: the trust commands.

Kept apart from main.py so the registry's signing and policy code (cryptography, regopy) is only
imported by the commands that use it; `add_commands` hooks them into the main parser.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from wasinfer.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, console, error, wasinfer_home
from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact

if TYPE_CHECKING:
    from wasinfer.registry.trust import TrustPolicy

KEY_KINDS = ("model-signing", "ed25519")  # trust.KEY_KINDS, repeated so `--help` imports no cryptography

# The signing (cryptography) and policy (regopy) modules are imported by the commands that use them: the
# registry extra's dependencies, which `wasinfer --help` and a base install do without.


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from wasinfer.registry.trust import generate_keys

    directory = Path(args.dir) if args.dir else wasinfer_home() / "keys"
    try:
        pair = generate_keys(directory, args.name, args.kind)
    except (OSError, ValueError) as exc:  # FileExistsError included: never overwrite a key
        error(str(exc))
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({"key_id": pair.key_id, "private_key": str(pair.private_key),
                          "public_key": str(pair.public_key)}))
        return 0
    console.print(f"key id       {pair.key_id}", highlight=False)
    console.print(f"private key  {pair.private_key}  (mode 0600; sign with WASINFER_SIGNING_KEY={pair.private_key})",
                  markup=False, highlight=False, soft_wrap=True)
    console.print(f"public key   {pair.public_key}  (give this to verifiers: WASINFER_TRUST_KEYS)",
                  markup=False, highlight=False, soft_wrap=True)
    return 0


def _artifact(args: argparse.Namespace) -> tuple[ModelArtifact, list[bytes]]:
    """The artifact a push of MODEL with these flags would make and its model-signing bundles (signed when
    --signing-key is given: a bundle with a P-256 key, the legacy annotations with an Ed25519 key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from wasinfer.artifact.metadata import read_metadata
    from wasinfer.registry.modelsign import sign_bundle
    from wasinfer.registry.trust import load_any_private_key, sign

    model = Path(args.model)
    wasm = model.read_bytes()
    metadata = read_metadata(wasm)
    source = Path(args.source).read_bytes() if args.source else None
    annotations = {}
    if args.accuracy is not None:
        annotations[ANNOTATIONS["accuracy"]] = str(args.accuracy)
    artifact = ModelArtifact.from_module(wasm, args.name or metadata.name or model.stem, args.version, source=source,
                                         source_format=metadata.source_format or "onnx", annotations=annotations)
    if not args.signing_key:
        return artifact, []
    key = Path(args.signing_key)
    if isinstance(load_any_private_key(key), Ed25519PrivateKey):
        return sign(artifact, key), []
    return artifact, [sign_bundle(artifact, key)]


def _trust(args: argparse.Namespace) -> TrustPolicy:
    """Keys from --trusted-keys (else $WASINFER_TRUST_KEYS), plus the signing key's own public half, so
    `--signing-key K` alone shows what a verifier trusting K would decide."""
    from wasinfer.registry.trust import ENV_TRUST_CA, ENV_TRUST_KEYS, TrustPolicy, load_any_private_key

    paths = [Path(p) for p in args.trusted_keys or []]
    if not paths:
        paths = [Path(p) for p in os.environ.get(ENV_TRUST_KEYS, "").split(os.pathsep) if p.strip()]
    cas = [Path(p) for p in os.environ.get(ENV_TRUST_CA, "").split(os.pathsep) if p.strip()]
    policy = TrustPolicy.from_paths("warn", paths, cas)
    if args.signing_key:
        policy.add_key(load_any_private_key(Path(args.signing_key)).public_key())
    return policy


def cmd_policy_test(args: argparse.Namespace) -> int:
    from wasinfer.registry.admission import judge
    from wasinfer.registry.policy import DEFAULT_POLICY_DIR, PolicyError, allowed, evaluate, policy_input
    from wasinfer.registry.trust import TrustError

    policy_dir = Path(args.policy_dir)
    if args.policy_dir == "default" and not policy_dir.exists():
        policy_dir = DEFAULT_POLICY_DIR
    try:
        data: dict[str, Any] | None = None
        if args.data:
            data = json.loads(Path(args.data).read_text())
            if not isinstance(data, dict):
                raise ValueError(f"--data {args.data}: must hold a JSON object")
        artifact, signatures = _artifact(args)
        verdict = judge(artifact, signatures, _trust(args))[0]
        document = policy_input(artifact, verdict)
        decisions = evaluate(policy_dir, document, data)
    except (OSError, ValueError, TrustError, PolicyError) as exc:  # json.JSONDecodeError is a ValueError
        error(str(exc))
        return EXIT_BAD_INPUT
    ok = allowed(decisions)
    if args.json:
        print(json.dumps({"allowed": ok, "policy_dir": str(policy_dir),
                          "signature": {"verified": verdict.verified, "signer": verdict.signer,
                                        "reason": verdict.reason},
                          "decisions": [d.as_json() for d in decisions], "input": document}))
        return 0 if ok else EXIT_FAILED
    table = Table(title=f"{artifact.name}:{artifact.version} against {policy_dir}")
    table.add_column("policy")
    table.add_column("rule")
    table.add_column("decision")
    table.add_column("messages")
    for d in decisions:
        shown = "[red]deny[/]" if not d.allowed else ("[yellow]warn[/]" if d.rule == "warn" else "[green]allow[/]")
        table.add_row(escape(d.policy), d.rule, shown, escape("\n".join(d.messages)))
    console.print(table)
    console.print(f"signature: {escape(verdict.reason)}", highlight=False)
    denied = sum(not d.allowed for d in decisions)
    console.print("[green]allowed[/]" if ok else f"[red]denied[/] by {denied} policy(ies)")
    return 0 if ok else EXIT_FAILED


def add_commands(sub: Any) -> None:
    """Add `keys` and `policy` to the main parser's subcommands."""
    keys = sub.add_parser("keys", help="manage signing keys",
                          description="Manage signing keys: P-256 (OpenSSF model signing) or Ed25519 (legacy).")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    p = keys_sub.add_parser("generate", help="create a signing key pair",
                            description="Create a key pair: NAME.key (PKCS#8 PEM, mode 0600; set "
                            "WASINFER_SIGNING_KEY to it to sign on push) and NAME.pub (give it to verifiers: "
                            "WASINFER_TRUST_KEYS). --kind model-signing (the default) makes a P-256 key, whose "
                            "signatures are OpenSSF model-signing bundles that `model_signing verify key` also "
                            "checks; --kind ed25519 the legacy annotation signature's key, read until wasinfer 0.2. "
                            "Never overwrites an existing key.")
    p.add_argument("--dir", metavar="DIR", help="where to write the keys (default $WASINFER_HOME/keys)")
    p.add_argument("--name", default="wasinfer", help="file name stem (default wasinfer)")
    p.add_argument("--kind", choices=KEY_KINDS, default=KEY_KINDS[0],
                   help="model-signing: a P-256 key for OpenSSF model signing (default); ed25519: the legacy kind")
    p.add_argument("--json", action="store_true", help="print the key id and paths as JSON")
    p.set_defaults(func=cmd_keys_generate)

    policy = sub.add_parser("policy", help="test Rego policies on a model",
                            description="Rego policies on models (evaluated in-process).")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    p = policy_sub.add_parser("test", help="print each policy decision on a model",
                              description="Evaluate every policy in POLICY_DIR (*.rego, data in *.json; `default` "
                              "for the shipped set) on MODEL as a push would present it, and print each decision. "
                              "Exit 0 when allowed, 1 when denied, 2 on bad input.")
    p.add_argument("policy_dir", metavar="POLICY_DIR", help="directory of .rego policies, or `default`")
    p.add_argument("model", metavar="MODEL", help="the .wasm module")
    p.add_argument("--name", help="model name (default: the name in the module's metadata)")
    p.add_argument("--version", default="0.0.0", help="semantic version (default 0.0.0)")
    p.add_argument("--accuracy", type=float, help="record this accuracy, as a push with --accuracy would")
    p.add_argument("--source", metavar="FILE", help="the source model, carried as a layer (adds its size and ops)")
    p.add_argument("--signing-key", metavar="KEY", help="sign with this private key first (and trust it)")
    p.add_argument("--trusted-keys", action="append", metavar="DIR_OR_PUB",
                   help="trusted public keys: a directory of *.pub or a file (repeatable; "
                   "default $WASINFER_TRUST_KEYS)")
    p.add_argument("--data", metavar="FILE.json", help="extra Rego data merged over POLICY_DIR's *.json")
    p.add_argument("--json", action="store_true", help="print the decisions (and the input document) as JSON")
    p.set_defaults(func=cmd_policy_test)
