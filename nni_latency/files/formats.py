"""The format string every JSON file of the package declares, so a file is told apart by its content, never its name.

Readers check it (``model.schema``, ``nas.lut``) and ``files.outputs`` sniffs it before a command writes over a file.
"""

__all__ = ["MODEL_FORMAT", "LUT_FORMAT", "LUT_TXT_START"]

MODEL_FORMAT = "nni-latency/device-model"
LUT_FORMAT = "nni-latency/lut"
# NNI 2.x FBNet's lut.txt: one Python-literal record per line, each starting so.
LUT_TXT_START = "{'op_name':"
