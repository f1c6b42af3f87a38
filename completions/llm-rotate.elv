
set edit:completion:arg-completer[llm-rotate] = { |@words|
    var index = (count $words)
    set index = (- $index 1)

    put (env _CLAP_IFS="\n" _CLAP_COMPLETE_INDEX=(to-string $index) LLM_ROTATE_COMPLETE="elvish" llm-rotate -- $@words) | to-lines
}

