"""The attacker's side of the red-team loop over HTTP: the PADHASH ladder (`poisoning`) and the query attacks
(`queries`) against a live `padhash serve` service, through padhash.service's client only."""
