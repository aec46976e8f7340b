"""Attacks on deep-hashing retrieval: `poisoning` (gradient matching), `backdoor` (CIBA), `adversarial` (DHTA & co.).

Sub-packages are imported explicitly (e.g. `from padhash.attacks.poisoning import craft_poisons`) so that one
family's imports never load another's.
"""
