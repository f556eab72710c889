"""trail: who is online on a website, who was online at any moment, and what each person did."""

__version__ = "0.1.0"
