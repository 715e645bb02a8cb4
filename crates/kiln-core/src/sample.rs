//! Seeded, stratified shares of a table's rows: `train.data_fraction` (a
//! cheaper `tune` trial) and `retrain.replay_share` (the old rows a warm
//! start replays) pick rows the same way.

use std::collections::BTreeMap;

/// Which rows to keep for a seeded `fraction` of each stratum (at least one
/// row of each), by row: the same share of every class, so a small class is
/// neither lost nor over-represented. `strata[i]` is row i's stratum.
pub fn stratified_keep<K: Ord>(strata: &[K], fraction: f64, seed: u64) -> Vec<bool> {
    let mut groups: BTreeMap<&K, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, stratum) in strata.iter().enumerate() {
        groups.entry(stratum).or_default().push((mix(seed ^ mix(i as u64)), i));
    }
    let mut keep = vec![false; strata.len()];
    for members in groups.values_mut() {
        members.sort_unstable();
        let count = ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len());
        for &(_, i) in &members[..count] {
            keep[i] = true;
        }
    }
    keep
}

/// [`stratified_keep`] applied: the kept rows, in their original order.
pub fn stratified_share<E, K: Ord>(examples: Vec<E>, fraction: f64, seed: u64, stratum: impl Fn(&E) -> K) -> Vec<E> {
    let strata: Vec<K> = examples.iter().map(stratum).collect();
    let keep = stratified_keep(&strata, fraction, seed);
    examples.into_iter().zip(keep).filter_map(|(e, k)| k.then_some(e)).collect()
}

/// splitmix64's finaliser: a well-spread order from a seed and an index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_keeps_each_class_in_proportion_and_follows_the_seed() {
        let labels: Vec<u32> = (0..1000).map(|i| if i % 10 == 0 { 1 } else { 0 }).collect();
        let kept = stratified_share(labels.clone(), 0.2, 7, |&l| l);
        assert_eq!(kept.len(), 200);
        assert_eq!(kept.iter().filter(|&&l| l == 1).count(), 20, "10% of the share is the small class, as before");
        let indexed: Vec<(usize, u32)> = labels.iter().copied().enumerate().collect();
        let a = stratified_share(indexed.clone(), 0.2, 7, |e| e.1);
        assert_eq!(a, stratified_share(indexed.clone(), 0.2, 7, |e| e.1), "same seed, same share");
        assert_ne!(a, stratified_share(indexed.clone(), 0.2, 8, |e| e.1));
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "in the original order");
        let tiny = stratified_share(vec![(0, 5u32)], 0.01, 1, |e| e.1);
        assert_eq!(tiny.len(), 1, "every class keeps at least one example");
    }

    #[test]
    fn string_strata_keep_every_label() {
        let labels = ["a", "a", "a", "a", "b", "c", "c"];
        let keep = stratified_keep(&labels, 0.25, 1);
        let kept: Vec<&str> = labels.iter().zip(&keep).filter(|(_, k)| **k).map(|(l, _)| *l).collect();
        assert_eq!(kept.iter().filter(|l| **l == "a").count(), 1);
        assert!(kept.contains(&"b") && kept.contains(&"c"), "{kept:?}");
        assert_eq!(stratified_keep(&labels, 1.0, 1), vec![true; 7], "a whole share keeps every row");
    }
}
