"""GlitchTip objects managed through its REST API: client, SSH tunnel, dynamic providers, component."""
