"""Turn `reconciler validate --json` diagnostics into GitHub annotations, so each problem shows
on its file and line in the pull request's diff.

    reconciler validate manifests --json > diagnostics.json || python .github/reconciler/annotations.py diagnostics.json
"""

import json
import sys


def escape(text: str) -> str:
    """Workflow commands end at a newline; GitHub decodes these escapes."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def annotation(problem: dict) -> str:
    where = f"file={escape(problem['file'])}"
    if problem.get("line"):
        where += f",line={problem['line']},col={problem.get('column') or 1}"
    field = f"{problem['field']}: " if problem.get("field") else ""
    return f"::{problem['severity']} {where},title=reconciler validate::{escape(field + problem['message'])}"


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        report = json.load(handle)
    for problem in report["diagnostics"]:
        print(annotation(problem))
    return 0 if report["valid"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
