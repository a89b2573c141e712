//! GitHub's anchors of a page's headings.

use std::collections::HashMap;

/// GitHub's anchors of a page's headings: lower case; letters, digits, spaces, `-` and `_`
/// kept, spaces as `-`; a heading met again gets `-1`, `-2`, ….
#[derive(Debug, Default)]
pub(super) struct Slugger(HashMap<String, usize>);

impl Slugger {
    pub(super) fn slug(&mut self, heading: &str) -> String {
        let base: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut slug = base.clone();
        while self.0.contains_key(&slug) {
            let count = self.0.get_mut(&base).expect("the base is taken");
            *count += 1;
            slug = format!("{base}-{count}");
        }
        self.0.insert(slug.clone(), 0);
        slug
    }
}

#[test]
fn anchors_are_github_s() {
    let mut slugs = Slugger::default();
    assert_eq!(slugs.slug("GET /v1/conversations/{id}/items/{item_id}"), "get-v1conversationsiditemsitem_id");
    assert_eq!(slugs.slug("persist serve: HTTP reference"), "persist-serve-http-reference");
    assert_eq!(slugs.slug("Persist extensions"), "persist-extensions");
    assert_eq!(slugs.slug("Persist extensions"), "persist-extensions-1");
    assert_eq!(slugs.slug("Persist extensions"), "persist-extensions-2");
    assert_eq!(slugs.slug("Persist extensions-1"), "persist-extensions-1-1");
}
