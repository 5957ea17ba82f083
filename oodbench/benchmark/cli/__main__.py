"""`python -m oodbench.benchmark.cli ...` = the `oodbench` command."""
import sys

from oodbench.benchmark.cli import main

sys.exit(main())
