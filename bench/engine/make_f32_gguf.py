#!/usr/bin/env python3
"""Writes an all-F32 copy of a GGUF file: every tensor dequantised with the
`gguf` package (llama.cpp's own reference code), every metadata key kept,
`general.file_type` set to ALL_F32.

It is the control of compare_llamacpp.py: with F32 weights and an F32 KV
cache, llama.cpp multiplies in f32 like our engine, so what remains of the
difference is summation order, not quantisation. A large difference there
would be a real discrepancy in the model's arithmetic.

Usage: make_f32_gguf.py IN.gguf OUT.gguf   (needs `pip install gguf numpy`)
"""

import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize

ALL_F32 = 0  # llama.cpp's LLAMA_FTYPE_ALL_F32


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1:]
    reader = GGUFReader(src)
    arch = reader.get_field("general.architecture").contents()
    writer = GGUFWriter(dst, arch)
    for field in reader.fields.values():
        # GGUF.* are the header's own entries; the writer writes the
        # architecture itself.
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        if field.name == "general.file_type":
            writer.add_uint32(field.name, ALL_F32)
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub_type)
    for t in reader.tensors:
        # The reader's shape is ggml order (innermost first).
        shape = [int(d) for d in reversed(t.shape)]
        if t.tensor_type == GGMLQuantizationType.F32:
            data = np.asarray(t.data, dtype=np.float32)
        else:
            data = dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, np.ascontiguousarray(data.reshape(shape)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
