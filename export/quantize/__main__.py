"""`python -m export.quantize`: see export.quantize.make."""
import sys

from export.quantize.make import main

sys.exit(main())
