//! Seed lists on disk (`tests/regressions/seeds.txt`, `quill sim --seeds-file`): one seed per
//! line, `seed ops faults [family]`, with `#` starting a comment.

use crate::runner::SimOptions;

/// Parses a seed list; an error names the line and what is wrong with it.
pub fn parse_seed_list(text: &str) -> Result<Vec<SimOptions>, String> {
    let mut seeds = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = parse_fields(&fields).map_err(|what| format!("line {}: {what}: {line:?}", number + 1))?;
        seeds.push(parsed);
    }
    Ok(seeds)
}

fn parse_fields(fields: &[&str]) -> Result<SimOptions, String> {
    if !(3..=4).contains(&fields.len()) {
        return Err("expected `seed ops faults [family]`".into());
    }
    let seed = fields[0].parse().map_err(|_| "the seed is not a number".to_string())?;
    let ops = fields[1].parse().map_err(|_| "ops is not a number".to_string())?;
    let faults = fields[2].parse()?;
    let mut options = SimOptions::new(seed, ops, faults);
    // An optional fourth field forces the seed's family (`quill sim --family`).
    options.family = fields.get(3).map(|family| family.parse()).transpose()?;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_names_bad_ones() {
        let seeds = parse_seed_list("# comment\n7 500 heavy ring_edge  # why\n\n3 100 none\n").expect("parses");
        assert_eq!(seeds.len(), 2);
        assert_eq!((seeds[0].seed, seeds[0].ops), (7, 500));
        assert_eq!(seeds[0].family, Some(crate::Family::RingEdge));
        assert_eq!(seeds[1].faults, crate::FaultLevel::None);
        let error = parse_seed_list("1 2 default\nx 2 default\n").expect_err("a bad seed");
        assert!(error.starts_with("line 2:"), "{error}");
        assert!(parse_seed_list("1 2 sometimes\n").is_err());
    }
}
