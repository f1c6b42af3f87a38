
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'llm-rotate' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'llm-rotate'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'llm-rotate' {
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('pick', 'pick', [CompletionResultType]::ParameterValue, 'Choose an endpoint that fits the request now and reserve it')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Pick an endpoint, run a command with it, record what happened, and fail over')
            [CompletionResult]::new('record', 'record', [CompletionResultType]::ParameterValue, 'Settle a reservation with the real usage, or record a call made without pick')
            [CompletionResult]::new('state', 'state', [CompletionResultType]::ParameterValue, 'Show each endpoint''s usage against its limits')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Forget the usage and reservations of endpoints')
            [CompletionResult]::new('history', 'history', [CompletionResultType]::ParameterValue, 'Requests and tokens per endpoint per UTC hour or day (kept 90 days)')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Write the example endpoints file to start from')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (roff), from the same definitions as --help')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'llm-rotate;pick' {
            [CompletionResult]::new('--tokens', '--tokens', [CompletionResultType]::ParameterName, 'Input tokens the request will use (estimate); `1200`, `4k`, `1_000`')
            [CompletionResult]::new('--tokens-from', '--tokens-from', [CompletionResultType]::ParameterName, 'Estimate the tokens from the prompt''s size: FILE''s bytes / 3, rounded up; `-` for stdin')
            [CompletionResult]::new('--max-output', '--max-output', [CompletionResultType]::ParameterName, 'Completion tokens allowed (`max_tokens`): the estimate''s output tokens')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Only endpoints whose id matches this glob (`*` any run, `?` one character); repeatable')
            [CompletionResult]::new('--exclude', '--exclude', [CompletionResultType]::ParameterName, 'Skip endpoints whose id matches this glob; repeatable')
            [CompletionResult]::new('--strategy', '--strategy', [CompletionResultType]::ParameterName, 'How to choose among the fitting endpoints of the highest priority')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'When nothing fits, wait for a slot: at most DURATION (30s, 5m, 1h), or without a value as long as it takes')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be chosen; reserve nothing')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Short for `--format json`')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'llm-rotate;exec' {
            [CompletionResult]::new('--tokens', '--tokens', [CompletionResultType]::ParameterName, 'Input tokens the request will use (estimate); `1200`, `4k`, `1_000`')
            [CompletionResult]::new('--tokens-from', '--tokens-from', [CompletionResultType]::ParameterName, 'Estimate the tokens from the prompt''s size: FILE''s bytes / 3, rounded up; `-` for stdin')
            [CompletionResult]::new('--max-output', '--max-output', [CompletionResultType]::ParameterName, 'Completion tokens allowed (`max_tokens`): the estimate''s output tokens')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Only endpoints whose id matches this glob (`*` any run, `?` one character); repeatable')
            [CompletionResult]::new('--exclude', '--exclude', [CompletionResultType]::ParameterName, 'Skip endpoints whose id matches this glob; repeatable')
            [CompletionResult]::new('--strategy', '--strategy', [CompletionResultType]::ParameterName, 'How to choose among the fitting endpoints of the highest priority')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'When nothing fits, wait for a slot: at most DURATION (30s, 5m, 1h), or without a value as long as it takes')
            [CompletionResult]::new('--attempts', '--attempts', [CompletionResultType]::ParameterName, 'Attempts in all, fail-overs included')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('--stream', '--stream', [CompletionResultType]::ParameterName, 'Write COMMAND''s stdout as it comes (streamed responses); no retry once it wrote')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'llm-rotate;record' {
            [CompletionResult]::new('--lease', '--lease', [CompletionResultType]::ParameterName, 'The lease printed by `pick --format json|shell`')
            [CompletionResult]::new('--tokens', '--tokens', [CompletionResultType]::ParameterName, 'Tokens really used (replaces the reservation''s estimate)')
            [CompletionResult]::new('--usage', '--usage', [CompletionResultType]::ParameterName, 'Read the tokens used from FILE (`-` for stdin): the response body, JSON or an SSE stream, in the shapes `exec` reads, or a whole number; whatever the status')
            [CompletionResult]::new('--requests', '--requests', [CompletionResultType]::ParameterName, 'Requests made [default: 1]')
            [CompletionResult]::new('--retry-after', '--retry-after', [CompletionResultType]::ParameterName, 'How long the provider asked to wait (its Retry-After): 30, 30s, 2m, or an HTTP date')
            [CompletionResult]::new('--headers', '--headers', [CompletionResultType]::ParameterName, 'The response''s headers, as `curl -D` writes them (`-` for stdin): read the provider''s rate-limit headers and Retry-After')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('--add', '--add', [CompletionResultType]::ParameterName, 'Record a new call now, even when a reservation is open')
            [CompletionResult]::new('--rate-limited', '--rate-limited', [CompletionResultType]::ParameterName, 'The call was refused with 429 Too Many Requests: skip the endpoint for a while')
            [CompletionResult]::new('--failed', '--failed', [CompletionResultType]::ParameterName, 'The call failed (other than a 429); three in a row skip the endpoint for a while')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'llm-rotate;state' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write to FILE atomically (a temporary file in its folder, then a rename) instead of stdout')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Short for `--format json`')
            [CompletionResult]::new('--no-header', '--no-header', [CompletionResultType]::ParameterName, 'CSV without its header row, for appending readings to one file')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'llm-rotate;reset' {
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Every endpoint in the database')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'llm-rotate;history' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'How far back: 24h, 7d, 90d [default: 24h by hour, 30d by day]')
            [CompletionResult]::new('--by', '--by', [CompletionResultType]::ParameterName, 'One row (or point) per UTC hour or day')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Short for `--format json`')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'llm-rotate;init' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write to FILE instead')
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Replace a file that is already there')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'llm-rotate;man' {
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'llm-rotate;completions' {
            [CompletionResult]::new('--endpoints', '--endpoints', [CompletionResultType]::ParameterName, 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'llm-rotate;help' {
            [CompletionResult]::new('pick', 'pick', [CompletionResultType]::ParameterValue, 'Choose an endpoint that fits the request now and reserve it')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Pick an endpoint, run a command with it, record what happened, and fail over')
            [CompletionResult]::new('record', 'record', [CompletionResultType]::ParameterValue, 'Settle a reservation with the real usage, or record a call made without pick')
            [CompletionResult]::new('state', 'state', [CompletionResultType]::ParameterValue, 'Show each endpoint''s usage against its limits')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Forget the usage and reservations of endpoints')
            [CompletionResult]::new('history', 'history', [CompletionResultType]::ParameterValue, 'Requests and tokens per endpoint per UTC hour or day (kept 90 days)')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Write the example endpoints file to start from')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (roff), from the same definitions as --help')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'llm-rotate;help;pick' {
            break
        }
        'llm-rotate;help;exec' {
            break
        }
        'llm-rotate;help;record' {
            break
        }
        'llm-rotate;help;state' {
            break
        }
        'llm-rotate;help;reset' {
            break
        }
        'llm-rotate;help;history' {
            break
        }
        'llm-rotate;help;init' {
            break
        }
        'llm-rotate;help;man' {
            break
        }
        'llm-rotate;help;completions' {
            break
        }
        'llm-rotate;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
