"""The cluster builder: the seed's manual Raspberry Pi preparation as a declarative spec."""
