"""The demo territory: five fictitious hospitals of one GHT and synthetic patients."""
