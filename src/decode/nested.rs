//! Local paths named twice, or one under another (`logs` and `logs/AWSLogs/1`, a link to
//! it): the walk of the outer one reads the inner one's files too, so the inner one is not
//! walked again, or each of its files would be decoded twice, next to each other in the time
//! order, and its messages written twice. One that does not exist has no real place: it is
//! kept, and reported. (Left out at debug level: `--follow` finds it again at every look.)

/// The indices of the inputs to walk, given where each really is, as components (`None`: not
/// known, walked), and whether the walk of input `outer` reaches what lies `below` it. Of two
/// at the same place, the first named is walked. Each left out is logged, as `shown` names it.
pub(super) fn outermost(
    places: &[Option<Vec<String>>],
    reaches: impl Fn(usize, &[String]) -> bool,
    shown: impl Fn(usize) -> String,
) -> Vec<usize> {
    let covered = |inner: usize| -> Option<usize> {
        let inner_place = places[inner].as_ref()?;
        places.iter().enumerate().find_map(|(outer, place)| {
            let below = inner_place.strip_prefix(place.as_ref()?.as_slice())?;
            let walked = if below.is_empty() {
                outer < inner
            } else {
                reaches(outer, below)
            };
            (outer != inner && walked).then_some(outer)
        })
    };
    (0..places.len())
        .filter(|&inner| match covered(inner) {
            Some(outer) => {
                tracing::debug!("{} is read once, as part of {}", shown(inner), shown(outer));
                false
            }
            None => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(path: &str) -> Option<Vec<String>> {
        Some(path.split('/').map(str::to_string).collect())
    }

    #[test]
    fn inputs_under_others_or_named_again_are_left_out_unless_the_walk_skips_them() {
        let places = [
            place("logs/AWSLogs/1"),
            place("logs"),
            place("logs"),
            None,
            place("logs/.hidden"),
            place("other"),
        ];
        let reaches = |_outer: usize, below: &[String]| !below.iter().any(|s| s.starts_with('.'));
        assert_eq!(
            outermost(&places, reaches, |input| input.to_string()),
            [1, 3, 4, 5]
        );
    }
}
