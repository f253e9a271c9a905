//! Helpers shared by the examples: the one method vocabulary (`--method list`), size parsing.
#![allow(dead_code)]

use dype_core::presets::{self, METHODS, Recipe};

/// `--method list`: every registry name with where it comes from and what it is — the same list in
/// every example.
pub fn method_list() -> String {
    let width = METHODS.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let mut out = String::from("methods (dype_core::presets::METHODS):\n");
    for e in METHODS {
        out.push_str(&format!(
            "  {:width$}  [{}] {}\n",
            e.name,
            e.family,
            e.summary,
            width = width
        ));
    }
    out
}

/// Prints the method list and exits when `name` is `list`.
pub fn exit_if_list(name: &str) {
    if name == "list" {
        print!("{}", method_list());
        std::process::exit(0);
    }
}

/// A registry recipe by name, with the same error in every example.
pub fn recipe(name: &str) -> anyhow::Result<Recipe> {
    presets::recipe_by_name(name).map_err(|e| anyhow::anyhow!("--method {name}: {e}"))
}

/// `N` (square) or `HxW` as numbers.
pub fn parse_size(s: &str) -> anyhow::Result<(usize, usize)> {
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|e| anyhow::anyhow!("size `{s}`: {e}"))
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => {
            let n = parse(s)?;
            Ok((n, n))
        }
    }
}
