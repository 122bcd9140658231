"""netaug-mcu: train tiny CNNs with Network Augmentation and deploy them to microcontrollers.

Sub-packages (each a folder of the repository, installed under this namespace):
  netaug_mcu.common     the shared floor: boards, preprocessing, .tflite reader, artefact formats,
                        TFLM op table, QEMU launcher, errors, atomic writes (numpy + stdlib only)
  netaug_mcu.trainer    zoo, NetAug super-net, training loop (torch)
  netaug_mcu.converter  PyTorch -> int8 TFLite, exact TFLM memory analyzer, budget gate
  netaug_mcu.firmware   TFLM + CMSIS-NN firmware generation and build
  netaug_mcu.hil        serial client, virtual board, on-device measurements, pytest suite
"""
__version__ = "0.1.0"

