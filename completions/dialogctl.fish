# fish completion for dialogctl (generated from the Typer app by 'python -m dialogctl.cli.docs'; do not edit).
# Install: copy to ~/.config/fish/completions/dialogctl.fish (or the system's vendor_completions.d).
function __dialogctl_complete
    set -l words (commandline -opc)
    set -l current (commandline -ct)
    for line in (env _DIALOGCTL_COMPLETE=fish $words $current 2>/dev/null)
        set -l parts (string split -m 2 \t -- $line)
        switch $parts[1]
            case file
                __fish_complete_path $current
            case dir
                __fish_complete_directories $current
            case '*'
                printf '%s\t%s\n' $parts[2] $parts[3]
        end
    end
end
complete -c dialogctl -f -a '(__dialogctl_complete)'
