"""netaug-mcu: converter stage."""
