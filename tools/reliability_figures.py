"""Print the reliability figures (tracemalloc and RSS deltas per kernel, and the other
measured values) that tests/runtime/test_reliability.py records with ``record_property``.

    python tools/reliability_figures.py [pytest arguments, e.g. -k leak]

It runs that test file with a JUnit XML report in a temporary folder and prints every
recorded property, test by test.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv) -> int:
    with tempfile.TemporaryDirectory(prefix="fastnn-figures-") as tmp:
        report = os.path.join(tmp, "report.xml")
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", os.path.join(ROOT, "tests", "runtime", "test_reliability.py"),
                              f"--junitxml={report}", "-o", "junit_family=xunit1", *argv], cwd=ROOT)
        if not os.path.exists(report):
            print("no report: pytest did not run", file=sys.stderr)
            return rc or 1
        print("\n[reliability figures]")
        for case in ET.parse(report).getroot().iter("testcase"):
            for prop in case.iter("property"):
                print(f"  {prop.get('name')}: {prop.get('value')}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
