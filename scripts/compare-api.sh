#!/usr/bin/env bash
# Sends the same list of HTTP requests to a fresh single-member etcd 3.4 (--enable-v2=true)
# and to a fresh single member of ours, normalises what legitimately differs (ids, dates,
# TTL countdowns, indexes rebased to the first write, raft index/term, Date, Content-Length,
# header-name case, stats counters) and prints every request whose status, relevant headers
# or body differ. Exits 0 when everything matches, 1 when something differs, 2 on setup
# failure. A development aid: the tests never need the reference server.
#   ETCD_BIN=target/release/etcd REF_ETCD=/usr/bin/etcd scripts/compare-api.sh
#   KEEP=1 keeps the work directory (both transcripts: $WORK/ref.txt, $WORK/ours.txt).
set -u
OURS=${ETCD_BIN:-target/release/etcd}
REF=${REF_ETCD:-etcd}
PORT_LO=${PORT_LO:-49000}
PORT_HI=${PORT_HI:-49999}
CURL_TIMEOUT=${CURL_TIMEOUT:-5}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-api.XXXXXX")
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "compare-api: $*" >&2; exit 2; }
command -v "$OURS" >/dev/null 2>&1 || [ -x "$OURS" ] || die "no server binary at $OURS (set ETCD_BIN)"
command -v "$REF" >/dev/null 2>&1 || die "no reference etcd ($REF; set REF_ETCD)"
for t in curl perl; do command -v $t >/dev/null || die "$t is needed"; done

# A port nobody listens on and that this run has not handed out yet.
USED=" "
free_port() {
  local p i
  for i in $(seq 200); do
    p=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO + 1)))
    case "$USED" in *" $p "*) continue ;; esac
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then USED="$USED$p "; echo $p; return; fi
  done
  die "no free port in $PORT_LO-$PORT_HI"
}

# start NAME BINARY EXTRA_ARGS... : a fresh single member; sets C (client URL), P (peer URL).
start() {
  local name=$1 bin=$2; shift 2
  local cp pp
  cp=$(free_port); pp=$(free_port)
  C=http://127.0.0.1:$cp; P=http://127.0.0.1:$pp
  mkdir -p "$WORK/$name"
  "$bin" --name n1 --data-dir "$WORK/$name/data" \
    --listen-client-urls "$C" --advertise-client-urls "$C" \
    --listen-peer-urls "$P" --initial-advertise-peer-urls "$P" \
    --initial-cluster "n1=$P" --initial-cluster-state new "$@" \
    >"$WORK/$name/log" 2>&1 &
  PIDS+=($!)
  local pid=$! i
  for i in $(seq 150); do
    kill -0 $pid 2>/dev/null || { tail -20 "$WORK/$name/log" >&2; die "$name exited while starting"; }
    # ready when a write commits (a leader exists)
    case $(curl -s -o /dev/null -w '%{http_code}' -m 2 -X PUT "$C/v2/keys/_compare_ready" -d value=1) in
      200|201) curl -s -o /dev/null -m 2 -X DELETE "$C/v2/keys/_compare_ready"; return ;;
    esac
    sleep 0.1
  done
  tail -20 "$WORK/$name/log" >&2; die "$name did not become ready on $C"
}

# ---------------------------------------------------------------------------------------
# One request. r NAME METHOD PATH [curl args...]
# In PATH and args, @{VAR} / @{VAR+n} / @{VAR-n} are replaced by a marked value (see mark);
# @{M} is the node's modifiedIndex in the previous answer (or its error "index"),
# @{X} the previous X-Etcd-Index, @{C} the client URL, @{P} the peer URL, @{P2} a spare peer URL.
declare -A V
subst() {
  local s=$1 re='@\{([A-Za-z0-9_]+)([+-][0-9]+)?\}' var off val
  while [[ $s =~ $re ]]; do
    var=${BASH_REMATCH[1]}; off=${BASH_REMATCH[2]}; val=${V[$var]:-}
    [ -n "$off" ] && val=$((val $off))
    s=${s/"${BASH_REMATCH[0]}"/$val}
  done
  printf '%s' "$s"
}
mark() { V[$1]=${V[M]:-}; }                   # mark NAME: remember the last modifiedIndex
capture() {                                    # capture NAME PERL_REGEX: first group of the last body
  V[$1]=$(perl -0ne 'if (/'"$2"'/) { print $1 }' "$WORK/body")
  [ -n "${V[$1]}" ] && IDS="$IDS ${V[$1]}"
}

N=0
r() {
  local name=$1 method=$2 raw=$3 path; path=$(subst "$3"); shift 3
  local args=() a
  for a in "$@"; do args+=("$(subst "$a")"); done
  N=$((N+1))
  local f; f=$(printf '%s/%03d' "$OUT" $N)
  local head=()
  [ "$method" = HEAD ] && head=(-I)
  local status
  : >"$WORK/body"; : >"$WORK/hdr"
  status=$(curl -s -g "${head[@]}" -X "$method" -m "$CURL_TIMEOUT" -D "$WORK/hdr" -o "$WORK/body" \
    -w '%{http_code}' "${args[@]}" "$C$path" 2>/dev/null)
  [ "$method" = HEAD ] && : >"$WORK/body"
  # remember indexes for later requests
  V[X]=$(tr -d '\r' <"$WORK/hdr" | sed -n 's/^[Xx]-[Ee]tcd-[Ii]ndex: *//p' | tail -1)
  local m; m=$(perl -ne 'if (/"modifiedIndex":(\d+)/ or /"index":(\d+)/) { print $1; exit }' "$WORK/body")
  V[M]=${m:-${V[X]}}
  {
    echo "### $N $name: $method $raw $*"
    echo "status: $status"
    tr -d '\r' <"$WORK/hdr" | perl -ne '
      next unless /^([^:]+):\s*(.*)$/; my ($k, $v) = (lc $1, $2);
      if ($k =~ /^(x-etcd-cluster-id|x-raft-index|x-raft-term)$/) { print "$k: <present>\n" }
      elsif ($k =~ /^(content-type|x-etcd-index|allow|location|access-control-allow-.*)$/) { print "$k: $v\n" }' | sort
    echo "body:"
    cat "$WORK/body"; echo
  } | normalise >"$f"
}

# Rewrites server-specific values: indexes relative to BASE, ids, URLs, times, TTL countdowns.
normalise() {
  BASE=$BASE SELF=$SELF IDS="$IDS" CURL="$C" PURL="$P" P2URL="${V[P2]}" STATS="${STATS:-}" perl -pe '
    BEGIN { $b = $ENV{BASE}; @ids = grep { length } split / /, $ENV{IDS}; }
    sub rb { my $n = shift; return $n == 0 ? 0 : $n - $b }   # 0 is "no index", not an index
    s/("(?:modifiedIndex|createdIndex|index)":)(\d+)/$1 . rb($2)/ge;
    s/^(x-etcd-index: )(\d+)/$1 . rb($2)/e;
    s/\b(\d{20})\b/sprintf("%020d", rb($1))/ge;                         # in-order keys
    s/\[(\d+) != (\d+)\]/"[" . rb($1) . " != " . rb($2) . "]"/ge;       # CAS causes
    s/("expiration":)"[^"]*"/$1"<time>"/g;
    s/("(?:startTime|time)":)"[^"]*"/$1"<time>"/g;
    s/("uptime":)"[^"]*"/$1"<duration>"/g;
    s/("etcd(?:server|cluster)":)"[^"]*"/$1"<version>"/g;                 # ours says 2.3.x by design
    s/("ttl":)(\d+)/$1 . "~" . (int(($2 + 9) \/ 10) * 10)/ge;               # countdowns
    s/\Q$ENV{CURL}\E/<client>/g; s/\Q$ENV{PURL}\E/<peer>/g;
    s/\Q$ENV{P2URL}\E/<peer2>/g if length $ENV{P2URL};
    s/\b\Q$ENV{SELF}\E\b/<self-id>/g;
    for my $i (@ids) { s/\b\Q$i\E\b/<id>/g }
    s/("id":)"[0-9a-f]+"/$1"<id>"/g;
    # members are listed by id, and ids are random: compare them as a set
    if (/^\{"members":\[(.*)\]\}$/) { my @m = sort split /(?<=\}),(?=\{)/, $1; $_ = "{\"members\":[" . join(",", @m) . "]}\n" }
    if ($ENV{STATS}) { s/(":)-?\d+(\.\d+)?(e[-+]?\d+)?/$1<n>/g; }   # counters and rates
  '
}

# ---------------------------------------------------------------------------------------
session() {
  OUT=$WORK/$1/out; mkdir -p "$OUT"; N=0; IDS=""; V=(); STATS=""
  V[C]=$C; V[P]=$P; V[P2]=http://127.0.0.1:$(free_port)
  SELF=$(curl -s -m 3 "$C/v2/members" | perl -ne 'print $1 if /"id":"([0-9a-f]+)"/')
  # the base index: the first write of the session is index 0 after normalisation
  BASE=$(curl -s -m 3 -X PUT "$C/v2/keys/_base" -d value=x | perl -ne "print \$1 if /\"modifiedIndex\":(\\d+)/")
  [ -n "$BASE" ] || die "no index from $C"

  # --- plain keys
  r set PUT /v2/keys/foo -d value=bar
  r get GET /v2/keys/foo
  r set-again PUT /v2/keys/foo -d value=baz
  r get-quorum GET '/v2/keys/foo?quorum=true'
  r head HEAD /v2/keys/foo
  r head-missing HEAD /v2/keys/nope
  r get-missing GET /v2/keys/nope
  r get-missing-deep GET /v2/keys/nope/deeper
  r set-query PUT '/v2/keys/q1?value=fromquery'
  r set-empty PUT /v2/keys/empty -d value=
  r set-novalue PUT /v2/keys/novalue
  r post-form-and-query PUT '/v2/keys/both?value=q' -d value=f
  r set-utf8 PUT /v2/keys/utf -d 'value=h%C3%A9llo%20w%2Brld'
  r get-utf8 GET /v2/keys/utf
  r set-escaped-key PUT '/v2/keys/a%20b%2Fc' -d value=1
  r get-escaped-key GET '/v2/keys/a%20b%2Fc'
  r set-dotdot PUT '/v2/keys/x/../y' -d value=1
  r get-dotdot GET '/v2/keys/y'
  r set-double-slash PUT '/v2/keys//dd//e' -d value=1
  r get-double-slash GET '/v2/keys/dd/e'
  r key-no-slash GET '/v2/keys?sorted=true'
  r get-double-slash-redirect GET '/v2/keys//dd//e'
  r json-body PUT /v2/keys/jsonbody -H 'Content-Type: application/json' -d '{"value":"v"}'

  # --- create / update / prevExist
  r create PUT '/v2/keys/c1?prevExist=false' -d value=one
  r create-exists PUT '/v2/keys/c1?prevExist=false' -d value=two
  r update PUT '/v2/keys/c1?prevExist=true' -d value=three
  r update-missing PUT '/v2/keys/c2?prevExist=true' -d value=x
  r prevexist-bad PUT '/v2/keys/c1?prevExist=maybe' -d value=x
  r prevexist-form PUT /v2/keys/c1 -d prevExist=true -d value=four

  # --- compare and swap
  r cas-value PUT '/v2/keys/c1?prevValue=four' -d value=five
  r cas-value-wrong PUT '/v2/keys/c1?prevValue=nope' -d value=six
  r cas-index PUT '/v2/keys/c1?prevIndex=@{M}' -d value=seven
  r cas-index-wrong PUT '/v2/keys/c1?prevIndex=@{M-1}' -d value=eight
  r cas-both-wrong PUT '/v2/keys/c1?prevIndex=@{M-1}&prevValue=nope' -d value=eight
  r cas-missing PUT '/v2/keys/c9?prevValue=x' -d value=y
  r cas-prevvalue-empty PUT '/v2/keys/c1?prevValue=' -d value=y
  r cas-previndex-zero PUT '/v2/keys/c1?prevIndex=0' -d value=y
  r cas-previndex-nan PUT '/v2/keys/c1?prevIndex=abc' -d value=y
  r cas-previndex-neg PUT '/v2/keys/c1?prevIndex=-1' -d value=y
  r cas-prevexist-false-value PUT '/v2/keys/c1?prevExist=false&prevValue=seven' -d value=y

  # --- compare and delete
  r cad-setup PUT /v2/keys/d1 -d value=dv
  r cad-value-wrong DELETE '/v2/keys/d1?prevValue=nope'
  r cad-index-wrong DELETE '/v2/keys/d1?prevIndex=@{M-1}'
  r cad-value DELETE '/v2/keys/d1?prevValue=dv'
  r cad-setup2 PUT /v2/keys/d2 -d value=dv
  r cad-index DELETE '/v2/keys/d2?prevIndex=@{M}'
  r cad-missing DELETE '/v2/keys/d2?prevValue=dv'
  r cad-prevvalue-empty DELETE '/v2/keys/c1?prevValue='
  r cad-previndex-nan DELETE '/v2/keys/c1?prevIndex=x'
  r delete DELETE /v2/keys/empty
  r delete-missing DELETE /v2/keys/empty

  # --- directories
  r mkdir PUT /v2/keys/dir -d dir=true
  r mkdir-again PUT /v2/keys/dir -d dir=true
  r mkdir-again-prevexist-false PUT '/v2/keys/dir?prevExist=false' -d dir=true
  r mkdir-query PUT '/v2/keys/dirq?dir=true'
  r mkdir-with-value PUT '/v2/keys/dirv?dir=true' -d value=x
  r set-in-dir PUT /v2/keys/dir/a -d value=1
  r set-in-dir2 PUT /v2/keys/dir/b -d value=2
  r set-deep PUT /v2/keys/dir/sub/c -d value=3
  r get-dir-one-child GET /v2/keys/dir/sub
  r get-dir-sorted GET '/v2/keys/dir?sorted=true'
  r get-dir-recursive-sorted GET '/v2/keys/dir?recursive=true&sorted=true'
  r get-root-sorted GET '/v2/keys/?sorted=true'
  r get-recursive-bad GET '/v2/keys/dir?recursive=yes'
  r get-sorted-bad GET '/v2/keys/dir?sorted=2'
  r not-a-file PUT /v2/keys/dir -d value=x
  r not-a-dir PUT /v2/keys/foo/under -d value=x
  r not-a-dir-get GET /v2/keys/foo/under
  r dir-over-file PUT /v2/keys/foo -d dir=true
  r cas-on-dir PUT '/v2/keys/dir?prevValue=x' -d value=y
  r delete-dir-plain DELETE /v2/keys/dir
  r delete-dir-not-empty DELETE '/v2/keys/dir?dir=true'
  r delete-dir-empty DELETE '/v2/keys/dirq?dir=true'
  r delete-file-dir-true DELETE '/v2/keys/q1?dir=true'
  r delete-recursive DELETE '/v2/keys/dir?recursive=true'
  r delete-recursive-file DELETE '/v2/keys/both?recursive=true'
  r cad-dir PUT /v2/keys/dir2 -d dir=true
  r cad-dir-prevvalue DELETE '/v2/keys/dir2?dir=true&prevValue=x'
  r cad-dir-previndex DELETE '/v2/keys/dir2?dir=true&prevIndex=@{M}'
  r root-put PUT /v2/keys/ -d value=x
  r root-post POST /v2/keys/ -d value=x
  r root-delete DELETE '/v2/keys/?dir=true&recursive=true'
  r root-delete-plain DELETE /v2/keys/
  r root-mkdir PUT '/v2/keys/?dir=true'

  # --- in-order keys
  r post-1 POST /v2/keys/queue -d value=job1
  r post-2 POST /v2/keys/queue -d value=job2
  r post-ttl POST /v2/keys/queue -d value=job3 -d ttl=100
  r post-list GET '/v2/keys/queue?recursive=true&sorted=true'
  r post-on-file POST /v2/keys/foo -d value=x
  r post-dir POST '/v2/keys/queue?dir=true'

  # --- TTL and refresh
  r ttl-set PUT /v2/keys/t -d value=v -d ttl=100
  r ttl-get GET /v2/keys/t
  r ttl-nan PUT /v2/keys/t -d value=v -d ttl=abc
  r ttl-neg PUT /v2/keys/t -d value=v -d ttl=-1
  r ttl-empty PUT /v2/keys/t -d value=v -d ttl=
  r ttl-float PUT /v2/keys/t -d value=v -d ttl=1.5
  r ttl-huge PUT /v2/keys/th -d value=v -d ttl=99999999999999999999999
  r refresh PUT '/v2/keys/t?refresh=true&ttl=200&prevExist=true'
  r refresh-get GET /v2/keys/t
  r refresh-no-ttl PUT '/v2/keys/t?refresh=true&prevExist=true'
  r refresh-with-value PUT '/v2/keys/t?refresh=true&ttl=50' -d value=new
  r refresh-missing PUT '/v2/keys/tmissing?refresh=true&ttl=50'
  r refresh-cas PUT '/v2/keys/t?refresh=true&ttl=60&prevValue=v'
  r refresh-cas-wrong PUT '/v2/keys/t?refresh=true&ttl=60&prevValue=zz'
  r refresh-bad PUT '/v2/keys/t?refresh=maybe&ttl=60'
  r ttl-clear PUT '/v2/keys/t?prevExist=true' -d value=v2 -d ttl=
  r ttl-dir PUT /v2/keys/tdir -d dir=true -d ttl=100
  r ttl-dir-update PUT '/v2/keys/tdir?prevExist=true' -d dir=true -d ttl=300
  r ttl-dir-get GET /v2/keys/tdir
  r ttl-short PUT /v2/keys/short -d value=v -d ttl=1
  r ttl-zero PUT /v2/keys/tz -d value=v -d ttl=0   # after ttl-short: when ttl=0 expires is timing
  sleep 2.2
  r ttl-expired GET /v2/keys/short
  r ttl-zero-expired GET /v2/keys/tz

  # --- hidden keys
  r hidden-set PUT /v2/keys/_hidden -d value=h
  r hidden-get GET /v2/keys/_hidden
  r hidden-dir PUT /v2/keys/hd/_h -d value=h
  r hidden-list GET '/v2/keys/hd?recursive=true'
  r hidden-root-list GET '/v2/keys/?sorted=true'

  # --- watches
  r w-set1 PUT /v2/keys/w -d value=one; mark W1
  r w-set2 PUT /v2/keys/w -d value=two
  r w-set3 PUT /v2/keys/w/../w -d value=three
  r wait-past GET '/v2/keys/w?wait=true&waitIndex=@{W1}'
  r wait-past-next GET '/v2/keys/w?wait=true&waitIndex=@{W1+1}'
  r wait-past-recursive GET '/v2/keys/?wait=true&recursive=true&waitIndex=@{W1}'
  r wait-index-nan GET '/v2/keys/w?wait=true&waitIndex=abc'
  r wait-index-neg GET '/v2/keys/w?wait=true&waitIndex=-5'
  r wait-bad GET '/v2/keys/w?wait=maybe'
  r wait-delete-past PUT /v2/keys/wd -d value=x; mark WD
  r wait-delete-past2 DELETE /v2/keys/wd
  r wait-past-deleted GET '/v2/keys/wd?wait=true&waitIndex=@{WD+1}'
  r wait-expire-past GET '/v2/keys/short?wait=true&waitIndex=@{WD-10}'
  r wait-stream-bad GET '/v2/keys/w?wait=true&stream=maybe&waitIndex=@{W1}'
  CURL_TIMEOUT=1 r wait-blocking-headers GET '/v2/keys/w?wait=true'

  # --- bad escapes and forms
  r bad-escape-query GET '/v2/keys/foo?recursive=%zz'
  r bad-escape-form PUT /v2/keys/foo -d 'value=%zz'
  r bad-escape-path GET '/v2/keys/%zz'
  r bad-form-type PUT /v2/keys/foo -H 'Content-Type: multipart/form-data' -d 'value=x'
  r form-text-plain PUT /v2/keys/tp -H 'Content-Type: text/plain' -d 'value=x'
  r method-patch PATCH /v2/keys/foo
  r method-options-key OPTIONS /v2/keys/foo

  # --- misc endpoints
  r version GET /version
  r version-post POST /version
  r health GET /health
  r health-post POST /health
  r machines GET /v2/machines
  r machines-post POST /v2/machines
  r v2-root GET /v2
  r v2-slash GET /v2/
  r root GET /
  r unknown GET /nope
  r unknown-v2 GET /v2/nope
  r unknown-v2-keysx GET /v2/keysx
  r auth-enable GET /v2/auth/enable
  r auth-users GET /v2/auth/users
  r stats-leader GET /v2/stats/leader
  r stats-unknown GET /v2/stats/nope
  r stats-post POST /v2/stats/store
  STATS=1
  r stats-self GET /v2/stats/self
  r stats-store GET /v2/stats/store
  STATS=

  # --- CORS
  r options-no-origin OPTIONS /v2/keys/foo
  r options-origin OPTIONS /v2/keys/foo -H 'Origin: http://example.com'
  r options-origin-preflight OPTIONS /v2/keys/foo -H 'Origin: http://example.com' \
    -H 'Access-Control-Request-Method: PUT' -H 'Access-Control-Request-Headers: X-Custom'
  r get-origin GET /v2/keys/foo -H 'Origin: http://example.com'
  r options-members OPTIONS /v2/members -H 'Origin: http://example.com'
  r options-version OPTIONS /version
  r options-unknown OPTIONS /nope -H 'Origin: http://example.com'

  # --- members API (mutations last: an added member never starts, the cluster may lose quorum)
  r members GET /v2/members
  r members-slash GET /v2/members/
  r members-leader GET /v2/members/leader
  r members-one GET "/v2/members/$SELF"
  r members-unknown-get GET /v2/members/ffff
  r members-patch PATCH /v2/members
  r members-head HEAD /v2/members
  r members-delete-noid DELETE /v2/members
  r members-delete-unknown DELETE /v2/members/1234abcd
  r members-delete-garbage DELETE /v2/members/xyz
  r members-delete-huge DELETE /v2/members/ffffffffffffffffff
  r members-post-no-ct POST /v2/members -d '{"peerURLs":["@{P2}"]}'
  r members-post-form-ct POST /v2/members -H 'Content-Type: application/x-www-form-urlencoded' -d '{"peerURLs":["@{P2}"]}'
  r members-post-bad-json POST /v2/members -H 'Content-Type: application/json' -d '{"peerURLs":'
  r members-post-empty POST /v2/members -H 'Content-Type: application/json' -d '{"peerURLs":[]}'
  r members-post-nofield POST /v2/members -H 'Content-Type: application/json' -d '{}'
  r members-post-bad-url POST /v2/members -H 'Content-Type: application/json' -d '{"peerURLs":["notaurl"]}'
  r members-post-bad-scheme POST /v2/members -H 'Content-Type: application/json' -d '{"peerURLs":["ftp://127.0.0.1:1"]}'
  r members-post-path-url POST /v2/members -H 'Content-Type: application/json' -d '{"peerURLs":["http://127.0.0.1:1/path"]}'
  r members-post-existing POST /v2/members -H 'Content-Type: application/json' -d '{"peerURLs":["@{P}"]}'
  r members-put-unknown PUT /v2/members/1234abcd -H 'Content-Type: application/json' -d '{"peerURLs":["@{P2}"]}'
  r members-put-no-ct PUT "/v2/members/$SELF" -d '{"peerURLs":["@{P}"]}'
  r members-put-bad-json PUT "/v2/members/$SELF" -H 'Content-Type: application/json' -d 'nope'
  r members-put-same PUT "/v2/members/$SELF" -H 'Content-Type: application/json' -d '{"peerURLs":["@{P}"]}'
  r members-put-noid PUT /v2/members -H 'Content-Type: application/json' -d '{"peerURLs":["@{P2}"]}'
  r members-after-put GET /v2/members
  r members-post POST /v2/members -H 'Content-Type: application/json' -d '{"peerURLs":["@{P2}"]}'
  capture NEW '"id":"([0-9a-f]+)"'
  r members-after-post GET /v2/members
}

start ref "$REF" --enable-v2=true
session ref
echo "reference: $REF on $C" >&2
start ours "$OURS"
session ours
echo "ours: $OURS on $C" >&2

cat "$WORK"/ref/out/* >"$WORK/ref.txt"; cat "$WORK"/ours/out/* >"$WORK/ours.txt"
diffs=0
for f in "$WORK"/ref/out/*; do
  g=$WORK/ours/out/${f##*/}
  if ! cmp -s "$f" "$g"; then
    diffs=$((diffs+1))
    echo "=== $(head -1 "$f" | sed 's/^### //')"
    diff -u --label etcd-3.4 --label ours "$f" "$g" | tail -n +3
  fi
done
total=$(ls "$WORK/ref/out" | wc -l)
if [ $diffs -eq 0 ]; then echo "all $total requests answered alike"; exit 0; fi
echo "$diffs of $total requests answered differently"
exit 1
