//! Prints the reference policy's decision for every case of a corpus file.
#![allow(clippy::unwrap_used, clippy::print_stdout)]
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/reference.yaml"
    ))
    .unwrap();
    let set = sluice_policy::PolicySet::new(vec![sluice_policy::Policy::from_yaml(&text).unwrap()]);
    let groups = vec!["agents".to_owned()];
    let subject = sluice_policy::Subject {
        identity: "agent",
        groups: &groups,
        target: "demo",
    };
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let d = set.decide(&subject, v["sql"].as_str().unwrap());
        println!("{} {:?} {}", v["id"], d.verdict, d.reason);
    }
}
