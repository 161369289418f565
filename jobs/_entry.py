"""What every job entry point shares: parse, run, print the result as JSON, raycl errors as one line."""
import argparse
import json
import sys

from raycl.errors import RayclError


def main(doc: str, run, config_required: bool = True, checkpoint_required: bool = False) -> None:
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--config", required=config_required, help="a YAML file or recipe:NAME")
    if checkpoint_required:
        ap.add_argument("--checkpoint", required=True, help="a checkpoint or a run directory (its newest)")
    ap.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = ap.parse_args()
    try:
        # Inside a Ray job RAY_ADDRESS is set, so raycl joins the job's cluster.
        print(json.dumps(run(args)), flush=True)
    except RayclError as e:
        print("raycl: error: " + " ".join(str(e).split()), file=sys.stderr)
        sys.exit(2)
