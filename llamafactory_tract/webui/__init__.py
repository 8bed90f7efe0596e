"""LlamaBoard (``llamafactory-cli webui``) under ``stage: cotraft``: the inputs, arguments and loss curve it adds."""
