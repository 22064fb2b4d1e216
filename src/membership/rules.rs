//! `--strict-reconfig-check`: a membership change must never leave fewer started members than
//! the quorum of the membership after it (etcd issue 3477). Pure arithmetic over counts, so
//! every member, applying the same log, decides the same way.

/// The quorum of `members` voters.
pub fn quorum(members: usize) -> usize {
    members / 2 + 1
}

/// Whether a member may be added to `members` members of which `started` have started.
/// Growing one started member to two is allowed, as in etcd, for disaster recovery
/// (restore a single member, then add the others back one by one).
pub fn may_add(members: usize, started: usize) -> bool {
    let after = members + 1;
    if started == 1 && after == 2 {
        return true;
    }
    started >= quorum(after)
}

/// Whether a member may be removed, given the members and started members that would remain.
pub fn may_remove(remaining: usize, remaining_started: usize) -> bool {
    remaining_started >= quorum(remaining)
}

/// A strict change as the leader's health rule sees it.
#[derive(Clone, Copy, Debug)]
pub enum Change {
    Add,
    Remove(u64),
}

/// etcd 3.x's health rule, on top of the started-members arithmetic: started is not alive.
/// `heard` lists every voter with whether the leader heard from it lately (the leader counts
/// itself). An addition needs every voter heard from, since the new member counts toward the
/// quorum before it runs; removing a voter that is heard from needs the others heard from to
/// make a quorum of what remains; a voter not heard from may always be removed. Says why the
/// change must be refused, if it must.
pub fn unhealthy(change: Change, heard: &[(u64, bool)]) -> Option<String> {
    let voters = heard.len();
    let active = heard.iter().filter(|(_, alive)| *alive).count();
    match change {
        Change::Add if active < voters => {
            let silent: Vec<String> = heard
                .iter()
                .filter(|(_, alive)| !alive)
                .map(|(id, _)| super::format_id(*id))
                .collect();
            Some(format!(
                "the leader has not heard from {} lately; a member added now would count \
                 toward the quorum before it runs",
                silent.join(", ")
            ))
        }
        Change::Remove(target)
            if heard.iter().any(|(id, alive)| *id == target && *alive)
                && active - 1 < quorum(voters - 1) =>
        {
            Some(format!(
                "only {active} of {voters} members are heard from; without {} the rest could \
                 not make a quorum",
                super::format_id(target)
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_rule_follows_etcd_3() {
        let all = [(1, true), (2, true), (3, true)];
        let one_down = [(1, true), (2, true), (3, false)];
        assert_eq!(unhealthy(Change::Add, &all), None);
        assert!(unhealthy(Change::Add, &one_down).is_some_and(|why| why.contains('3')));
        assert_eq!(
            unhealthy(Change::Remove(3), &one_down),
            None,
            "the dead one may go"
        );
        assert!(
            unhealthy(Change::Remove(2), &one_down).is_some(),
            "a live one may not"
        );
        assert_eq!(unhealthy(Change::Remove(2), &all), None);
    }

    #[test]
    fn adding_follows_etcds_table() {
        // (members, started, allowed) from etcd's own test table.
        let table = [
            (3, 0, false),
            (2, 1, false),
            (3, 1, false),
            (1, 1, true),
            (3, 2, false),
            (3, 3, true),
        ];
        for (members, started, allowed) in table {
            assert_eq!(
                may_add(members, started),
                allowed,
                "{started}/{members} started"
            );
        }
    }

    #[test]
    fn removing_follows_etcds_cases() {
        assert!(!may_remove(0, 0), "the only member cannot be removed");
        assert!(may_remove(1, 1), "{{1 started, 2 unstarted}}: remove 2");
        assert!(!may_remove(2, 1), "{{1, 2 started, 3 unstarted}}: remove 2");
        assert!(may_remove(3, 3), "3 of 4 started: remove the unstarted one");
    }

    #[test]
    fn the_issue_3477_wedge_is_refused_at_the_first_step_that_would_cause_it() {
        // Three started members; add unstarted ones one by one.
        let (mut members, started) = (3, 3);
        let mut admitted = 0;
        while may_add(members, started) {
            members += 1;
            admitted += 1;
        }
        assert_eq!(
            admitted, 2,
            "3 started can carry 5 members (quorum 3), not 6"
        );
        assert!(started >= quorum(members));
    }
}
