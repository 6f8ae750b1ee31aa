//! The project's code rules, checked on its sources: every Rust file under `crates/` and
//! `guests/` opens with a `//!` doc comment, and no function is longer than 70 lines unless
//! `tidy/long-functions.txt` lists it at its exact length, a list that may only shrink.
//!
//! It reads the files only and builds nothing: functions and their spans come from `syn`, so
//! strings, comments and macros never confuse the count.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::visit::{self, Visit};

/// Lines a function may take, from its `fn` line to its closing brace.
const FUNCTION_LINES_MAX: usize = 70;

/// The functions allowed to be longer, relative to the workspace root.
const ALLOWLIST: &str = "tidy/long-functions.txt";

/// The folders whose Rust files the rules hold for, relative to the workspace root.
const SOURCE_ROOTS: [&str; 2] = ["crates", "guests"];

fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .expect("the crate sits at crates/crowdcloud in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under the source roots, as paths relative to `root` with `/` separators,
/// sorted. Build output (`target/`) and hidden folders are skipped.
fn rust_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut folders: Vec<PathBuf> = SOURCE_ROOTS.iter().map(|dir| root.join(dir)).collect();
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", folder.display()));
        for entry in entries {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() && name != "target" && !name.starts_with('.') {
                folders.push(path);
            } else if kind.is_file() && name.ends_with(".rs") {
                let relative = path.strip_prefix(root).expect("under the workspace root");
                files.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    files
}

fn read(root: &Path, relative: &str) -> String {
    std::fs::read_to_string(root.join(relative))
        .unwrap_or_else(|error| panic!("cannot read {relative}: {error}"))
}

#[test]
fn every_rust_file_opens_with_a_doc_comment() {
    let root = workspace_root();
    let missing: Vec<String> = rust_files(&root)
        .into_iter()
        .filter(|file| !read(&root, file).starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not begin with a `//!` doc comment; start each with one that says what \
         the file is for:\n  {}",
        missing.join("\n  ")
    );
}

/// One function: where it is and how many lines it takes.
struct Function {
    /// `path::name`, where the name is qualified by the modules, types and traits around it
    /// (`crates/agent/src/lib.rs::Agent::start`).
    key: String,
    lines: usize,
}

/// Collects the functions of one file, with the names of the items around them.
struct Functions {
    path: String,
    scope: Vec<String>,
    found: Vec<Function>,
}

impl Functions {
    fn record(&mut self, name: &syn::Ident, fn_token: &syn::token::Fn, block: &syn::Block) {
        let first = fn_token.span.start().line;
        let last = block.brace_token.span.close().end().line;
        let mut key = format!("{}::", self.path);
        for outer in &self.scope {
            key.push_str(outer);
            key.push_str("::");
        }
        key.push_str(&name.to_string());
        self.found.push(Function {
            key,
            lines: last + 1 - first,
        });
    }

    fn within(&mut self, name: String, visit: impl FnOnce(&mut Self)) {
        self.scope.push(name);
        visit(self);
        self.scope.pop();
    }
}

/// The name an impl block's functions are listed under: its type's last path segment.
fn type_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(path) => path
            .path
            .segments
            .last()
            .map_or_else(|| "impl".to_owned(), |segment| segment.ident.to_string()),
        syn::Type::Reference(reference) => type_name(&reference.elem),
        _ => "impl".to_owned(),
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.record(&item.sig.ident, &item.sig.fn_token, &item.block);
        self.within(item.sig.ident.to_string(), |this| {
            visit::visit_item_fn(this, item);
        });
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.record(&item.sig.ident, &item.sig.fn_token, &item.block);
        self.within(item.sig.ident.to_string(), |this| {
            visit::visit_impl_item_fn(this, item);
        });
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if let Some(block) = &item.default {
            self.record(&item.sig.ident, &item.sig.fn_token, block);
        }
        self.within(item.sig.ident.to_string(), |this| {
            visit::visit_trait_item_fn(this, item);
        });
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        self.within(type_name(&item.self_ty), |this| {
            visit::visit_item_impl(this, item);
        });
    }

    fn visit_item_trait(&mut self, item: &'ast syn::ItemTrait) {
        self.within(item.ident.to_string(), |this| {
            visit::visit_item_trait(this, item);
        });
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.within(item.ident.to_string(), |this| {
            visit::visit_item_mod(this, item);
        });
    }
}

/// Every function of the source roots by key, with its length. Two functions of one file
/// with the same qualified name (a `fmt` of two trait impls) are told apart by `#2`, `#3`.
fn functions(root: &Path) -> BTreeMap<String, usize> {
    let mut all = BTreeMap::new();
    for path in rust_files(root) {
        let text = read(root, &path);
        let file = syn::parse_file(&text).unwrap_or_else(|error| {
            let at = error.span().start();
            panic!(
                "{path}:{}:{}: cannot parse: {error}; fix the syntax",
                at.line, at.column
            )
        });
        let mut functions = Functions {
            path,
            scope: Vec::new(),
            found: Vec::new(),
        };
        functions.visit_file(&file);
        for function in functions.found {
            let mut key = function.key.clone();
            let mut seen = 1;
            while all.contains_key(&key) {
                seen += 1;
                key = format!("{}#{seen}", function.key);
            }
            all.insert(key, function.lines);
        }
    }
    all
}

/// The allowlist's entries: key and the length it allows.
fn allowlist(root: &Path) -> BTreeMap<String, usize> {
    let mut entries = BTreeMap::new();
    for (index, line) in read(root, ALLOWLIST).lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = line
            .rsplit_once(' ')
            .and_then(|(key, lines)| Some((key.trim().to_owned(), lines.parse().ok()?)));
        let Some((key, lines)) = entry else {
            panic!(
                "{ALLOWLIST}:{}: `{line}` is not `path::function lines`; write it so or remove it",
                index + 1
            );
        };
        if entries.insert(key, lines).is_some() {
            panic!(
                "{ALLOWLIST}:{}: `{line}` is listed twice; keep one",
                index + 1
            );
        }
    }
    entries
}

/// What is wrong with the long functions and the allowlist, one sentence a line.
fn length_problems(
    functions: &BTreeMap<String, usize>,
    allowed: &BTreeMap<String, usize>,
) -> String {
    let mut problems = String::new();
    for (key, &lines) in functions {
        let listed = allowed.get(key).copied();
        let _ = match listed {
            None if lines > FUNCTION_LINES_MAX => writeln!(
                problems,
                "{key} is {lines} lines, more than {FUNCTION_LINES_MAX}; split it into \
                 functions of at most {FUNCTION_LINES_MAX} lines ({ALLOWLIST} may only shrink)"
            ),
            Some(_) if lines <= FUNCTION_LINES_MAX => writeln!(
                problems,
                "{key} is {lines} lines now, within {FUNCTION_LINES_MAX}; remove its entry \
                 from {ALLOWLIST}"
            ),
            Some(listed) if lines > listed => writeln!(
                problems,
                "{key} grew from {listed} to {lines} lines; split it so it takes at most \
                 {listed} (better {FUNCTION_LINES_MAX}), never raise its entry in {ALLOWLIST}"
            ),
            Some(listed) if lines < listed => writeln!(
                problems,
                "{key} shrank from {listed} to {lines} lines; lower its entry in {ALLOWLIST} \
                 to {lines}"
            ),
            _ => Ok(()),
        };
    }
    for key in allowed.keys().filter(|key| !functions.contains_key(*key)) {
        let _ = writeln!(
            problems,
            "{key} no longer exists; remove its entry from {ALLOWLIST}"
        );
    }
    problems
}

#[test]
fn functions_are_short_or_listed_at_their_length() {
    let root = workspace_root();
    let problems = length_problems(&functions(&root), &allowlist(&root));
    assert!(problems.is_empty(), "{problems}");
}
