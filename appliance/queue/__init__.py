"""The ECC queue client: poll, claim, respond, over the instance's REST Table API."""
