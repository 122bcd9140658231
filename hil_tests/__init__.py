"""netaug-mcu: hil_tests stage."""
