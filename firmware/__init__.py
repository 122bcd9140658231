"""netaug-mcu: firmware stage."""
