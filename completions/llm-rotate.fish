complete --keep-order --exclusive --command llm-rotate --arguments "(LLM_ROTATE_COMPLETE=fish llm-rotate -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
