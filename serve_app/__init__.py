"""The Ray Serve ingress: OpenAI and Ollama dialects over the fleet."""
