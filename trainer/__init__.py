"""netaug-mcu: trainer stage."""
