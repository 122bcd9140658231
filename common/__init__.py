"""The shared floor of netaug-mcu: facts and file formats every stage reads, numpy + stdlib only.

boards          the board database (memory regions, flash, clocks, UART clocks, reserves)
preprocess      THE input preprocessing definition (uint8 image -> normalised float NHWC -> int8)
datasets        Fashion-MNIST (IDX files, locations, checksums) and ImageFolder scanning
tflite_model    the one bounds-checked .tflite reader
artifacts       model.pt / model.json / checkpoint / HIL journal format tags and readers
tflm_ops        the TFLM op table (builtin ops, MicroMutableOpResolver methods, int8 kernels)
qemu            the one QEMU launcher
paths           the per-user cache and data directories
fsio            atomic file writes
errors          UserError, the base of every error a user can cause
"""
