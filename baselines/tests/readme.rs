//! The README's table of kinds is `suite kinds`' (`kinds_markdown`), generated from the one
//! list: a kind added without the table updated fails here. (Its own test binary, so no kind a
//! test registers is in the list.)

use beatmatch_baselines::kinds_markdown;

#[test]
fn the_readme_table_is_the_lists() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- kinds:begin -->\n", "<!-- kinds:end -->");
    let start = readme.find(begin).expect("README.md has a kinds:begin marker") + begin.len();
    let stop = readme.find(end).expect("README.md has a kinds:end marker");
    assert_eq!(&readme[start..stop], kinds_markdown(), "README.md's table differs from `suite kinds`: paste its first table between the markers");
}
