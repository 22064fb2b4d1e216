//! Each etcdctl command: its argument checks, its requests, what it prints, how it exits.

use std::io::Read;
use std::time::Duration;

use super::args::{Cli, Command, MemberCommand, Rest};
use super::output::{self, Health, Printed};
use super::{
    print_err, print_out, Exit, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_CLUSTER_NOT_HEALTHY,
    EXIT_SERVER_ERROR,
};
use crate::client::keys::{self, DeleteOptions, GetOptions, PrevExist, SetOptions, Watcher};
use crate::client::{members, Client, ClientError, Config};
use crate::net::Connector;

pub async fn run(cli: Cli) -> Result<(), Exit> {
    let command = cli.command.clone().expect("parse requires a command");
    match command {
        Command::Watch {
            forever,
            after_index,
            recursive,
            rest,
        } => {
            let mut client = connect(&cli, true).await?;
            watch(&cli, &mut client, &rest, after_index, recursive, forever).await
        }
        Command::ExecWatch {
            after_index,
            recursive,
            args,
        } => {
            let mut client = connect(&cli, true).await?;
            exec_watch(&mut client, args, after_index, recursive).await
        }
        Command::ClusterHealth { forever } => cluster_health(&cli, forever).await,
        Command::Backup(_) => Err(Exit::new(
            EXIT_BAD_ARGS,
            "Error:  backup is not supported by this etcdctl; stop the member and copy its data directory\n",
        )),
        Command::User(_) | Command::Role(_) | Command::Auth(_) => Err(Exit::new(
            EXIT_BAD_ARGS,
            "Error:  authentication is not supported by this server yet\n",
        )),
        other => {
            // Everything but the watches must finish within --total-timeout.
            let total = cli.total_timeout;
            match tokio::time::timeout(total, once(&cli, other)).await {
                Ok(result) => result,
                Err(_) => Err(Exit::new(
                    EXIT_SERVER_ERROR,
                    "Error:  context deadline exceeded\n",
                )),
            }
        }
    }
}

async fn once(cli: &Cli, command: Command) -> Result<(), Exit> {
    let format = cli.output.as_str();
    match command {
        Command::Member(member) => {
            let mut client = connect(cli, true).await?;
            member_command(&mut client, member).await
        }
        Command::Set {
            ttl,
            swap_with_value,
            swap_with_index,
            rest,
        } => {
            let key = key_arg(&rest)?;
            let value = value_arg(&rest)?;
            let mut client = connect(cli, true).await?;
            let options = SetOptions {
                prev_value: swap_with_value,
                prev_index: swap_with_index,
                ttl,
                ..SetOptions::default()
            };
            let r = keys::set(&mut client, &key, &value, &options).await;
            show(output::response_key(&server(r)?, format))
        }
        Command::Mk {
            in_order,
            ttl,
            rest,
        } => {
            let key = key_arg(&rest)?;
            let value = value_arg(&rest)?;
            let mut client = connect(cli, true).await?;
            let r = if in_order {
                keys::create_in_order(&mut client, &key, &value, ttl).await
            } else {
                let options = SetOptions {
                    prev_exist: PrevExist::NoExist,
                    ttl,
                    ..SetOptions::default()
                };
                keys::set(&mut client, &key, &value, &options).await
            };
            show(output::response_key(&server(r)?, format))
        }
        Command::Update { ttl, rest } => {
            let key = key_arg(&rest)?;
            let value = value_arg(&rest)?;
            let mut client = connect(cli, true).await?;
            let options = SetOptions {
                prev_exist: PrevExist::Exist,
                ttl,
                ..SetOptions::default()
            };
            let r = keys::set(&mut client, &key, &value, &options).await;
            show(output::response_key(&server(r)?, format))
        }
        Command::Mkdir { ttl, rest } => dir_command(cli, &rest, ttl, PrevExist::NoExist).await,
        Command::Setdir { ttl, rest } => dir_command(cli, &rest, ttl, PrevExist::Ignore).await,
        Command::Updatedir { ttl, rest } => dir_command(cli, &rest, ttl, PrevExist::Exist).await,
        Command::Rm {
            dir,
            recursive,
            with_value,
            with_index,
            rest,
        } => {
            let key = key_arg(&rest)?;
            let mut client = connect(cli, true).await?;
            let options = DeleteOptions {
                prev_value: with_value,
                prev_index: with_index,
                dir,
                recursive,
            };
            let r = server(keys::delete(&mut client, &key, &options).await)?;
            if !r.node().dir || format != "simple" {
                show(output::response_key(&r, format))?;
            }
            Ok(())
        }
        Command::Rmdir(rest) => {
            let key = key_arg(&rest)?;
            let mut client = connect(cli, true).await?;
            let options = DeleteOptions {
                dir: true,
                ..DeleteOptions::default()
            };
            let r = server(keys::delete(&mut client, &key, &options).await)?;
            if !r.node().dir || format != "simple" {
                show(output::response_key(&r, format))?;
            }
            Ok(())
        }
        Command::Get { sort, quorum, rest } => {
            let key = key_arg(&rest)?;
            let mut client = connect(cli, true).await?;
            let options = GetOptions {
                sort,
                quorum,
                recursive: false,
            };
            let r = server(keys::get(&mut client, &key, &options).await)?;
            let node = r.node();
            if node.dir {
                return Err(Exit::new(
                    EXIT_BAD_ARGS,
                    format!("{}: is a directory\n", node.key),
                ));
            }
            show(output::response_key(&r, format))
        }
        Command::Ls {
            sort,
            recursive,
            p,
            quorum,
            rest,
        } => {
            let key = rest.args.first().cloned().unwrap_or_else(|| "/".into());
            let mut client = connect(cli, true).await?;
            let options = GetOptions {
                sort,
                quorum,
                recursive,
            };
            let r = server(keys::get(&mut client, &key, &options).await)?;
            show(output::ls(&r, format, p))
        }
        Command::Watch { .. }
        | Command::ExecWatch { .. }
        | Command::ClusterHealth { .. }
        | Command::Backup(_)
        | Command::User(_)
        | Command::Role(_)
        | Command::Auth(_) => unreachable!("handled by run"),
    }
}

/// mkdir, setdir and updatedir: a directory set that prints nothing in the simple format.
async fn dir_command(cli: &Cli, rest: &Rest, ttl: u64, prev_exist: PrevExist) -> Result<(), Exit> {
    let key = key_arg(rest)?;
    let mut client = connect(cli, true).await?;
    let options = SetOptions {
        dir: true,
        prev_exist,
        ttl,
        ..SetOptions::default()
    };
    let r = server(keys::set(&mut client, &key, "", &options).await)?;
    if cli.output != "simple" {
        show(output::response_key(&r, &cli.output))?;
    }
    Ok(())
}

fn show(printed: Printed) -> Result<(), Exit> {
    print_out(&printed.stdout);
    print_err(&printed.stderr);
    Ok(())
}

/// A keys request's failure, as etcdctl reports it: status 4 whatever the cause.
fn server<T>(result: Result<T, ClientError>) -> Result<T, Exit> {
    result.map_err(|e| Exit::new(EXIT_SERVER_ERROR, output::error(&e)))
}

fn key_arg(rest: &Rest) -> Result<String, Exit> {
    rest.args
        .first()
        .cloned()
        .ok_or_else(|| Exit::new(EXIT_BAD_ARGS, "Error:  key required\n"))
}

/// The value argument, or all of standard input when there is none.
fn value_arg(rest: &Rest) -> Result<String, Exit> {
    if let Some(value) = rest.args.get(1) {
        return Ok(value.clone());
    }
    let mut input = String::new();
    match std::io::stdin().read_to_string(&mut input) {
        Ok(_) if !input.is_empty() => Ok(input),
        _ => Err(Exit::new(EXIT_BAD_ARGS, "Error:  value required\n")),
    }
}

fn client_config(cli: &Cli) -> Result<Config, Exit> {
    if cli.discovery_srv.is_some() {
        return Err(Exit::new(
            EXIT_BAD_ARGS,
            "Error:  --discovery-srv is not supported yet; give --endpoints\n",
        ));
    }
    let credentials = cli
        .username
        .as_ref()
        .map(|text| match text.split_once(':') {
            Some((user, password)) => (user.to_string(), password.to_string()),
            None => {
                print_err("Password: ");
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                (
                    text.clone(),
                    line.trim_end_matches(['\r', '\n']).to_string(),
                )
            }
        });
    Ok(Config {
        endpoints: cli.endpoint_list(),
        dial_timeout: cli.timeout,
        header_timeout: cli.timeout,
        debug: cli.debug,
        credentials,
        connector: connector(cli)?,
    })
}

/// etcdctl's transport: TLS with `--cert-file`, `--key-file` and `--ca-file` (the system's
/// roots when no CA is given) for `https://` endpoints; files that cannot be used end the
/// command (status 1), as etcdctl's do.
fn connector(cli: &Cli) -> Result<Connector, Exit> {
    let files = crate::tls::ClientFiles {
        cert: cli.cert_file.as_ref().map(Into::into),
        key: cli.key_file.as_ref().map(Into::into),
        trusted_ca: cli.ca_file.as_ref().map(Into::into),
        skip_verify: cli.insecure_skip_tls_verify,
    };
    let wanted = files != crate::tls::ClientFiles::default()
        || cli
            .endpoint_list()
            .iter()
            .any(|e| e.starts_with("https://"));
    if !wanted {
        return Ok(Connector::plain());
    }
    files
        .load("client")
        .map(Connector::with_tls)
        .map_err(|why| Exit::new(EXIT_BAD_ARGS, format!("{why}\n")))
}

/// etcdctl's `mustNewClient`: the client, synced to the cluster's published client URLs
/// unless `--no-sync`; a sync that cannot reach anyone is a bad connection (status 2).
async fn connect(cli: &Cli, sync: bool) -> Result<Client, Exit> {
    let config = client_config(cli)?;
    let mut client = Client::new(config).map_err(|e| Exit::new(EXIT_BAD_ARGS, format!("{e}\n")))?;
    if sync && !cli.no_sync {
        if cli.debug {
            print_err(&format!(
                "start to sync cluster using endpoints({})\n",
                client.endpoints().join(",")
            ));
        }
        let synced = tokio::time::timeout(cli.total_timeout, client.sync()).await;
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(ClientError::NoEndpoints)) => {
                return Err(Exit::new(
                    EXIT_SERVER_ERROR,
                    format!(
                        "etcd cluster has no published client endpoints.\nTry '--no-sync' if you \
                         want to access non-published client endpoints({}).\n{}",
                        client.endpoints().join(","),
                        output::error(&ClientError::NoEndpoints)
                    ),
                ));
            }
            Ok(Err(e)) if e.is_connection() => {
                return Err(Exit::new(EXIT_BAD_CONNECTION, output::error(&e)));
            }
            // Any other failure leaves the endpoints as given, as etcdctl does.
            Ok(Err(_)) | Err(_) => {}
        }
        if cli.debug {
            print_err(&format!(
                "got endpoints({}) after sync\n",
                client.endpoints().join(",")
            ));
        }
    }
    if cli.debug {
        print_err(&format!(
            "Cluster-Endpoints: {}\n",
            client.endpoints().join(", ")
        ));
    }
    Ok(client)
}

async fn member_command(client: &mut Client, command: MemberCommand) -> Result<(), Exit> {
    let fail = |text: String| Exit::new(EXIT_BAD_ARGS, text);
    match command {
        MemberCommand::List(rest) => {
            if !rest.args.is_empty() {
                return Err(fail("No arguments accepted\n".into()));
            }
            let list = members::list(client)
                .await
                .map_err(|e| fail(format!("{e}\n")))?;
            let leader = members::leader(client)
                .await
                .map_err(|e| fail(format!("Failed to get leader:  {e}\n")))?;
            print_out(&output::member_list(&list, &leader.id));
            Ok(())
        }
        MemberCommand::Add(rest) => {
            let [name, url] = rest.args.as_slice() else {
                return Err(fail("Provide a name and a single member peerURL\n".into()));
            };
            // One URL as etcdctl takes it, or several separated by commas.
            let urls: Vec<String> = url.split(',').map(String::from).collect();
            let added = members::add(client, &urls)
                .await
                .map_err(|e| fail(format!("{e}\n")))?;
            let list = members::list(client)
                .await
                .map_err(|e| fail(format!("{e}\n")))?;
            print_out(&output::member_added(name, &added.id, &list));
            Ok(())
        }
        MemberCommand::Remove(rest) => {
            let [id] = rest.args.as_slice() else {
                return Err(fail("Provide a single member ID\n".into()));
            };
            let list = members::list(client).await.map_err(|e| {
                fail(format!(
                    "Error while verifying ID against known members: {e}\n"
                ))
            })?;
            let mut warnings = String::new();
            let mut found = false;
            for m in &list {
                found |= m.id == *id;
                if m.name == *id {
                    warnings.push_str(&format!(
                        "Found a member named {}; if this is correct, please use its ID, eg:\n\
                         \tetcdctl member remove {}\nFor more details, read the documentation at \
                         https://github.com/etcd-io/etcd/blob/master/Documentation/runtime-configuration.md#remove-a-member\n\n",
                        m.name, m.id
                    ));
                }
            }
            print_err(&warnings);
            if !found {
                return Err(fail(format!(
                    "Couldn't find a member in the cluster with an ID of {id}.\n"
                )));
            }
            members::remove(client, id).await.map_err(|e| {
                fail(format!(
                    "Received an error trying to remove member {id}: {e}\n"
                ))
            })?;
            print_out(&format!("Removed member {id} from cluster\n"));
            Ok(())
        }
        MemberCommand::Update(rest) => {
            let [id, urls] = rest.args.as_slice() else {
                return Err(fail(
                    "Provide an ID and a list of comma separated peerURL (0xabcd http://example.com,http://example1.com)\n"
                        .into(),
                ));
            };
            let urls: Vec<String> = urls.split(',').map(String::from).collect();
            members::update(client, id, &urls)
                .await
                .map_err(|e| fail(format!("{e}\n")))?;
            print_out(&format!("Updated member with ID {id} in cluster\n"));
            Ok(())
        }
    }
}

async fn watch(
    cli: &Cli,
    client: &mut Client,
    rest: &Rest,
    after_index: u64,
    recursive: bool,
    forever: bool,
) -> Result<(), Exit> {
    let key = key_arg(rest)?;
    let mut watcher = Watcher::new(&key, after_index, recursive);
    let events = async {
        loop {
            let r = server(watcher.next(client).await)?;
            if r.node().dir {
                continue;
            }
            show(output::watch_event(&r, &cli.output, recursive))?;
            if !forever {
                return Ok(());
            }
        }
    };
    // Ctrl-C ends a watch successfully, as in etcdctl.
    tokio::select! {
        result = events => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn exec_watch(
    client: &mut Client,
    args: Vec<String>,
    after_index: u64,
    recursive: bool,
) -> Result<(), Exit> {
    // `exec-watch KEY -- CMD...`, or etcdctl's other order, `exec-watch CMD... KEY`.
    if args.len() < 2 {
        return Err(Exit::new(
            EXIT_BAD_ARGS,
            "Error:  key and command to exec required\n",
        ));
    }
    let (key, program) = match args.iter().skip(1).position(|a| a == "--") {
        Some(at) => (args[0].clone(), args[at + 2..].to_vec()),
        None => (
            args[args.len() - 1].clone(),
            args[..args.len() - 1].to_vec(),
        ),
    };
    if program.is_empty() {
        return Err(Exit::new(
            EXIT_BAD_ARGS,
            "Error:  key and command to exec required\n",
        ));
    }
    let mut watcher = Watcher::new(&key, after_index, recursive);
    let events = async {
        loop {
            let r = server(watcher.next(client).await)?;
            let node = r.node();
            if node.dir {
                print_err(&format!("Ignored dir {} change\n", node.key));
                continue;
            }
            let child = std::process::Command::new(&program[0])
                .args(&program[1..])
                .env("ETCD_WATCH_ACTION", &r.action)
                .env("ETCD_WATCH_MODIFIED_INDEX", node.modified_index.to_string())
                .env("ETCD_WATCH_KEY", &node.key)
                .env("ETCD_WATCH_VALUE", &node.value)
                .spawn();
            match child {
                // Not awaited: the next change may come while the command still runs, as in
                // etcdctl; a task reaps it.
                Ok(mut child) => {
                    tokio::task::spawn_blocking(move || child.wait());
                }
                Err(e) => return Err(Exit::new(EXIT_BAD_ARGS, format!("{e}\n"))),
            }
        }
    };
    tokio::select! {
        result = events => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// `cluster-health`: each member's `/health` on its published client URLs, then the verdict;
/// status 5 unless every member is healthy.
async fn cluster_health(cli: &Cli, forever: bool) -> Result<(), Exit> {
    let mut client = connect(cli, false).await?;
    // The files are read once, for every member's check.
    let connector = connector(cli)?;
    let list = match tokio::time::timeout(cli.total_timeout, members::list(&mut client)).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => {
            print_out("cluster may be unhealthy: failed to list members\n");
            return Err(Exit::new(EXIT_SERVER_ERROR, output::error(&e)));
        }
        Err(_) => {
            print_out("cluster may be unhealthy: failed to list members\n");
            return Err(Exit::new(
                EXIT_SERVER_ERROR,
                "Error:  context deadline exceeded\n",
            ));
        }
    };
    loop {
        let mut healthy = 0;
        for m in &list {
            let health = member_health(cli, &connector, &m.id, &m.client_urls).await;
            if matches!(health, Health::Healthy(_)) {
                healthy += 1;
            }
            print_out(&output::health_line(&m.id, &health));
        }
        print_out(&format!(
            "{}\n",
            output::cluster_verdict(healthy, list.len())
        ));
        if !forever {
            return if healthy == list.len() {
                Ok(())
            } else {
                Err(Exit::new(EXIT_CLUSTER_NOT_HEALTHY, ""))
            };
        }
        print_out("\nnext check after 10 second...\n\n");
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn member_health(cli: &Cli, connector: &Connector, id: &str, urls: &[String]) -> Health {
    #[derive(serde::Deserialize)]
    struct Answer {
        health: serde_json::Value,
    }
    if urls.is_empty() {
        return Health::NoClientUrls;
    }
    for url in urls {
        let reply = match crate::client::fetch(url, "/health", connector, cli.timeout).await {
            Ok(reply) => reply,
            Err(why) => {
                print_out(&format!(
                    "failed to check the health of member {id} on {url}: Get \"{url}/health\": {why}\n"
                ));
                continue;
            }
        };
        let failed = |why: String| {
            print_out(&format!(
                "failed to check the health of member {id} on {url}: {why}\n"
            ))
        };
        let answer: Answer = match serde_json::from_slice(&reply.body) {
            Ok(a) => a,
            Err(e) => {
                failed(e.to_string());
                continue;
            }
        };
        let good = answer.health == serde_json::json!("true") || answer.health == true;
        return if good {
            Health::Healthy(url.clone())
        } else {
            Health::Unhealthy(url.clone())
        };
    }
    Health::Unreachable(urls.to_vec())
}
