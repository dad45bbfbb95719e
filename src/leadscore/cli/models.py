"""``leadscore models``: list, show, register, activate and roll back versions in the model registry.

Wire it into the main parser with ``add_models_command(commands)``; handlers raise
:class:`~leadscore.core.exceptions.LeadscoreError` subclasses, which ``leadscore.cli.main.main``
prints as one line.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leadscore.artifacts.registry import Registry

Handler = Callable[[argparse.Namespace], int | None]
ROOT_HELP = "registry folder (default: $LEADSCORE_REGISTRY, else registry)"


def _registry(args: argparse.Namespace) -> Registry:
    from leadscore.artifacts.registry import Registry  # lazy: keeps `--help` fast

    root = Path(args.registry) if args.registry else Registry.default_root()
    return Registry(root, keep=args.keep)


def _cmd_list(args: argparse.Namespace) -> None:
    registry = _registry(args)
    infos = registry.versions()
    if not infos:
        print(f"{registry.root}/ has no versions: add one with `leadscore models register BUNDLE_DIR`")
        return
    width = max(5, *(len(i.model) for i in infos))
    challenger = registry.challenger_version()
    print(f"  {'version':<14}  {'model':<{width}}  {'roc_auc':>7}  created")
    for info in infos:
        auc = info.metrics.get("roc_auc")
        auc_text = "-" if auc is None else f"{auc:.4f}"
        mark = "*" if info.active else "c" if info.version == challenger else " "
        print(f"{mark} {info.version:<14}  {info.model:<{width}}  {auc_text:>7}  {info.created_at}")


def _cmd_show(args: argparse.Namespace) -> None:
    print(json.dumps(_registry(args).show(args.version), indent=2, sort_keys=True))


def _card_source(args: argparse.Namespace) -> tuple[dict, str | None]:
    """Metadata and version name of VERSION: a registered version, ``active``, or a bundle folder."""
    from leadscore.artifacts.metadata import read_metadata
    from leadscore.core.exceptions import ModelNotFoundError

    target = str(args.version)
    if Path(target).is_dir():
        meta = read_metadata(target)
        return meta, meta.get("version")
    registry = _registry(args)
    if target == "active":
        active = registry.active_version()
        if active is None:
            raise ModelNotFoundError(f"{registry.root}/ has no active model: give a VERSION from "
                                     "`leadscore models list`")
        target = active
    return registry.show(target), target


def _cmd_card(args: argparse.Namespace) -> None:
    from leadscore.artifacts.card import build_card
    from leadscore.artifacts.card_render import to_html, to_markdown, write_card

    meta, version = _card_source(args)
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            from leadscore.core.exceptions import ConfigError

            raise ConfigError(f"--out {out} is a file: give a folder for model_card.md and model_card.html")
        out.mkdir(parents=True, exist_ok=True)
        for path in write_card(out, meta, version):
            print(path)
        return
    card = build_card(meta, version)
    print(to_html(card) if args.format == "html" else to_markdown(card), end="")


def _cmd_activate(args: argparse.Namespace) -> None:
    from leadscore.core.exceptions import ModelIntegrityError

    registry = _registry(args)
    try:
        previous = registry.active_version()
    except ModelIntegrityError as exc:  # activating is how a damaged ACTIVE file is repaired
        previous = f"none readable ({exc})"
    registry.activate(args.version)
    print(f"active: {args.version} (was {previous or 'none'}) in {registry.root}/")


def _cmd_rollback(args: argparse.Namespace) -> None:
    registry = _registry(args)
    previous = registry.active_version()
    version = registry.rollback()
    print(f"active: {version} (rolled back from {previous}) in {registry.root}/")


def _cmd_register(args: argparse.Namespace) -> None:
    registry = _registry(args)
    version = registry.register(args.bundle_dir, activate=args.activate, trust=args.trust_model)
    state = "active" if registry.active_version() == version else "not active"
    print(f"registered {args.bundle_dir} as {version} in {registry.root}/ ({state})")


def _cmd_sign(args: argparse.Namespace) -> None:
    if not args.trust_model:
        from leadscore.core.exceptions import ConfigError

        raise ConfigError("signing vouches for the code in the models: confirm with --trust-model that "
                          "you made these versions yourself")
    registry = _registry(args)
    names = registry.sign(args.versions or None)
    print(f"signed {len(names)} version(s) in {registry.root}/ with this machine's key: "
          f"{', '.join(names) or 'none'}")


def _add(commands: argparse._SubParsersAction, name: str, handler: Handler, summary: str,
         description: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=handler)
    parser.add_argument("--registry", metavar="PATH", help=ROOT_HELP)
    parser.add_argument("--keep", type=int, default=10, metavar="N",
                        help="versions kept when registering; the active one and the rollback target "
                             "are always kept (default: %(default)s)")
    return parser


def add_models_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore models {list,show,card,activate,rollback,register,sign,challenger,promote,history}``
    to ``commands``."""
    from leadscore.cli.promote import add_lifecycle_commands

    models = commands.add_parser(
        "models", help="list, register, activate and roll back model versions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The model registry: versions named by their UTC registration time\n"
                    "(YYYYMMDDHHMMSS), one of them active. Every activation and load verifies the\n"
                    "model's sha256 first; switching is atomic, so a running scorer never sees half\n"
                    "a switch.")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")
    _add(sub, "list", _cmd_list, "registered versions, newest first (* = active, c = challenger)",
         "One line per version: name, model, test ROC-AUC, creation time; * marks the active one,\n"
         "c the challenger.")
    p = _add(sub, "show", _cmd_show, "the metadata of one version as JSON",
             "Print the metadata.json of VERSION (metrics, features, threshold, sha256, ...).")
    p.add_argument("version", metavar="VERSION", help="a version name from `leadscore models list`")
    p = _add(sub, "card", _cmd_card, "the model card of a version (Markdown or HTML)",
             "The model card of VERSION: intended use, training data and label, features and the\n"
             "leakage guard's results, held-out metrics with bootstrap intervals, calibration,\n"
             "threshold and tiers, quality per segment, known limitations. Built from the\n"
             "version's metadata alone; registration writes it next to the model as\n"
             "model_card.md and model_card.html.\n\n"
             "examples:\n"
             "  leadscore models card active                     # Markdown on stdout\n"
             "  leadscore models card 20261129120000 --out cards # cards/model_card.{md,html}\n"
             "  leadscore models card models/mine --format html > card.html   # a bundle folder")
    p.add_argument("version", metavar="VERSION",
                   help="a version from `leadscore models list`, `active`, or a model folder")
    p.add_argument("--out", metavar="DIR", help="write model_card.md and model_card.html into DIR")
    p.add_argument("--format", choices=("markdown", "html"), default="markdown",
                   help="what to print when --out is not given (default: %(default)s)")
    p = _add(sub, "activate", _cmd_activate, "make a version the active model",
             "Verify VERSION's sha256, then switch the active pointer to it atomically.\n"
             "The previously active version is remembered for `rollback`.")
    p.add_argument("version", metavar="VERSION", help="a version name from `leadscore models list`")
    _add(sub, "rollback", _cmd_rollback, "re-activate the previously active version",
         "Switch back to the version that was active before the current one (verified first).\n"
         "Run it again to go further back.")
    p = _add(sub, "register", _cmd_register, "add a saved model folder as a new version",
             "Verify BUNDLE_DIR's sha256, copy it into the registry as a new version named by the\n"
             "current UTC time, and prune all but the newest --keep versions.\n\n"
             "example: leadscore models register artifacts/export --activate")
    p.add_argument("bundle_dir", metavar="BUNDLE_DIR", help="folder with model.joblib and metadata.json")
    q = _add(sub, "sign", _cmd_sign, "sign registered versions with this machine's key",
             "For registries made before models were signed, or copied from another machine:\n"
             "versions load only when their signature matches this machine's key. Signing\n"
             "vouches for the code in the pickles, so it needs --trust-model.\n\n"
             "example: leadscore models sign --trust-model          # every version")
    q.add_argument("versions", nargs="*", metavar="VERSION", help="versions to sign (default: all)")
    q.add_argument("--trust-model", action="store_true", help="confirm you trust these versions")
    add_lifecycle_commands(sub, _add)
    p.add_argument("--activate", action="store_true", help="make the new version active")
    p.add_argument("--trust-model", action="store_true",
                   help="register a bundle that is unsigned or signed with another key (it is then "
                        "signed with this registry's key; only for bundles you made yourself)")
