//! A full disk: nothing more can be made durable, so the loop holds what it was writing and
//! tries again, refusing what would need the disk and serving what does not.

use super::*;

/// How long a member whose disk is full waits before it tries to write again.
const ROOM_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A failed disk step: `Ok` with the reason when the disk was full (the step may be tried
/// again), `Err` when the member must stop.
pub(super) struct DiskFull(Result<String, Fatal>);

impl From<WalError> for DiskFull {
    fn from(e: WalError) -> Self {
        DiskFull(match e {
            WalError::NoSpace(_) => Ok(e.to_string()),
            e => Err(e.to_string()),
        })
    }
}

impl From<SnapError> for DiskFull {
    fn from(e: SnapError) -> Self {
        DiskFull(if e.is_no_space() {
            Ok(e.to_string())
        } else {
            Err(e.to_string())
        })
    }
}

impl<R: Runtime> Core<R> {
    /// The disk is full (`full` says so; any other failure ends the member): nothing more can
    /// be made durable, so nothing more may be promised. Until there is room the member
    /// refuses writes, quorum reads and membership changes at once, and drops its peers'
    /// messages (to them it is down); local reads go on, served from the store as it stands.
    /// Every second it lets its caller try the failed step again.
    pub(super) async fn wait_for_room(&mut self, full: impl Into<DiskFull>) -> Result<(), Fatal> {
        let DiskFull(why) = full.into();
        let why = why?;
        {
            let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
            if !status.disk_full {
                eprintln!("etcd: the disk is full ({why}); writes are refused until there is room");
                status.disk_full = true;
            }
            // Raft stands still meanwhile, and its peers elect another leader: this member
            // must not go on naming itself (or anyone) leader to clients.
            status.role = Role::Follower;
            status.leader = 0;
            status.followers.clear();
        }
        let until = self.rt.elapsed() + ROOM_RETRY;
        loop {
            let sleep = self.rt.sleep(until.saturating_sub(self.rt.elapsed()));
            tokio::select! {
                biased;
                // Stops, and what raft hears of its peers (a snapshot's outcome must reach it
                // whatever happens here), before clients.
                _ = self.shared.control.woken() => {
                    if !self.take_control() {
                        return Err("stopped".into());
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Propose { reply, .. }) => { let _ = reply.send(Err(no_space())); }
                    Some(Command::Read { reply, .. }) => { let _ = reply.send(Err(no_space())); }
                    Some(Command::ChangeMembers { reply, .. }) => {
                        let _ = reply.send(Err(MembershipError::Unavailable(
                            crate::error::NO_SPACE_CAUSE.into(),
                        )));
                    }
                    None => return Err("stopped".into()),
                },
                message = recv_or_wait(&mut self.inbox) => {
                    if message.is_none() {
                        self.inbox = None;
                    }
                }
                _ = sleep => break,
            }
        }
        Ok(())
    }
}
