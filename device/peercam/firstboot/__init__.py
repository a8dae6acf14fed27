"""First boot: settings a user wrote on the SD card's boot partition."""
