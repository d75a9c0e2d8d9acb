"""`python -m export.onnx`: see export.onnx.graphs."""
import sys

from export.onnx.graphs import main

sys.exit(main())
