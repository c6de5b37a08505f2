"""Helper for benches/aws_vs_chaostoolkit.sh: seeds moto, writes the simian policy and the chaostoolkit
experiment, verifies what was terminated, and prints the side-by-side table.

Every AWS call goes to the moto server named by BENCH_ENDPOINT (must be a loopback URL); the driver script
sets fake credentials. Subcommands:

  seed DIR          reset-free seeding: VPC, 3 subnets, 1 security group, INSTANCES instances in GROUPS groups
  policy DIR URL    DIR/simian.yaml for simian (aws_ec2 target at URL, chaos probability 1.0, mode live)
  experiment DIR    DIR/experiment.json for `chaos run`: one terminate_instance action per group
  verify DIR        which instances are no longer running, per group; writes DIR/verify.json
  table RESULTS     the side-by-side table from a JSON-lines results file
"""

import json
import os
import statistics
import sys

ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
GROUP_TAG = "aws:autoscaling:groupName"
OPT_IN_TAG = "simian:opt-in"
AMI = "ami-12c6146b"  # an AMI id moto knows
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "5000"))
GROUPS = int(os.environ.get("BENCH_GROUPS", "50"))
PER_CALL = 100  # RunInstances MaxCount per call


def ec2():
    """A client for the moto server in $BENCH_ENDPOINT; refuses anything but a loopback http URL."""
    import boto3
    from urllib.parse import urlparse

    endpoint = os.environ.get("BENCH_ENDPOINT", "")
    host = urlparse(endpoint).hostname or ""
    if not endpoint.startswith("http://") or not (host == "localhost" or host.startswith("127.")):
        sys.exit(f"BENCH_ENDPOINT must be a loopback moto URL like http://127.0.0.1:PORT, not {endpoint!r}")
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)


def group_name(g):
    return f"group-{g:02d}"


def seed(out_dir):
    """Creates the network and launches the fleet; each group's instances are spread over the 3 zones,
    launched with real subnets and a real security group (DESIGN.md, moto quirks)."""
    c = ec2()
    vpc = c.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {}
    for i, zone in enumerate(ZONES):
        sn = c.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i * 16}.0/20", AvailabilityZone=zone)
        subnets[zone] = sn["Subnet"]["SubnetId"]
    sg = c.create_security_group(GroupName="app", Description="bench app", VpcId=vpc)["GroupId"]
    per_group = INSTANCES // GROUPS
    calls = 0
    ids = {}
    for g in range(GROUPS):
        name = group_name(g)
        ids[name] = []
        # per_group instances over the zones as evenly as possible (e.g. 100 -> 34/33/33)
        shares = [per_group // len(ZONES) + (1 if z < per_group % len(ZONES) else 0) for z in range(len(ZONES))]
        for zone, share in zip(ZONES, shares):
            left = share
            while left > 0:
                n = min(left, PER_CALL)
                r = c.run_instances(
                    ImageId=AMI,
                    InstanceType="t3.micro",
                    MinCount=n,
                    MaxCount=n,
                    SubnetId=subnets[zone],
                    SecurityGroupIds=[sg],
                    TagSpecifications=[
                        {
                            "ResourceType": "instance",
                            "Tags": [
                                {"Key": GROUP_TAG, "Value": name},
                                {"Key": OPT_IN_TAG, "Value": "true"},
                            ],
                        }
                    ],
                )
                calls += 1
                ids[name].extend(i["InstanceId"] for i in r["Instances"])
                left -= n
    total = sum(len(v) for v in ids.values())
    with open(os.path.join(out_dir, "seed.json"), "w") as f:
        json.dump({"vpc": vpc, "subnets": subnets, "security_group": sg, "ids": ids}, f)
    print(f"seeded {total} instances in {GROUPS} groups over {len(ZONES)} zones ({calls} RunInstances calls)")


def policy(out_dir, endpoint):
    text = f"""# written by benches/aws_bench.py
version: 1
mode: live
store: {out_dir}/simian.db
opt_in: {{ tag: "{OPT_IN_TAG}", value: "true" }}
targets:
  - name: bench
    type: aws_ec2
    regions: [us-east-1]
    endpoint_url: {endpoint}
    group_by: "{GROUP_TAG}"
monkeys:
  chaos:
    schedule: "* * * * *"
    probability: 1.0
"""
    with open(os.path.join(out_dir, "simian.yaml"), "w") as f:
        f.write(text)


def experiment(out_dir):
    """The same job for chaostoolkit: per group, chaosaws.ec2.actions.terminate_instance picks one random
    instance among those matching the filters (group tag, opt-in tag, running) and terminates it."""
    method = []
    for g in range(GROUPS):
        name = group_name(g)
        method.append(
            {
                "type": "action",
                "name": f"terminate-one-in-{name}",
                "provider": {
                    "type": "python",
                    "module": "chaosaws.ec2.actions",
                    "func": "terminate_instance",
                    "arguments": {
                        "filters": [
                            {"Name": f"tag:{GROUP_TAG}", "Values": [name]},
                            {"Name": f"tag:{OPT_IN_TAG}", "Values": ["true"]},
                            {"Name": "instance-state-name", "Values": ["running"]},
                        ]
                    },
                },
            }
        )
    exp = {
        "version": "1.0.0",
        "title": "Chaos Monkey: terminate one random opted-in instance in each group",
        "description": f"{GROUPS} terminate_instance actions, one per group (benches/aws_bench.py)",
        "tags": ["aws", "ec2", "benchmark"],
        "configuration": {"aws_region": "us-east-1"},
        "method": method,
        "rollbacks": [],
    }
    with open(os.path.join(out_dir, "experiment.json"), "w") as f:
        json.dump(exp, f, indent=1)


def verify(out_dir):
    """Per group: how many of its seeded instances are not running any more. Prints one JSON line."""
    with open(os.path.join(out_dir, "seed.json")) as f:
        seeded = json.load(f)
    c = ec2()
    state = {}
    for page in c.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 1000}):
        for r in page["Reservations"]:
            for i in r["Instances"]:
                state[i["InstanceId"]] = i["State"]["Name"]
    per_group = {}
    for name, ids in seeded["ids"].items():
        per_group[name] = sum(1 for i in ids if state.get(i) != "running")
    terminated = sum(per_group.values())
    one_each = all(n == 1 for n in per_group.values())
    result = {"terminated": terminated, "one_per_group": one_each, "groups": len(per_group)}
    with open(os.path.join(out_dir, "verify.json"), "w") as f:
        json.dump(dict(result, per_group=per_group), f)
    print(json.dumps(result))


def table(results_path):
    rows = [json.loads(line) for line in open(results_path) if line.strip()]
    tools = []
    for r in rows:
        if r["tool"] not in tools:
            tools.append(r["tool"])
    cols = ["tool", "run", "wall s", "peak RSS MiB", "user+sys s", "moto CPU s", "API requests", "api_calls",
            "actions ok", "terminated", "1/group", "exit"]

    def fmt(r, run):
        return [
            r["tool"],
            str(run),
            f"{r['wall_s']:.2f}",
            f"{r['rss_kib'] / 1024:.1f}",
            f"{r['cpu_s']:.2f}",
            f"{r['moto_cpu_s']:.2f}",
            str(r["requests"]),
            "-" if r.get("api_calls") is None else str(r["api_calls"]),
            "-" if r.get("done") is None else str(r["done"]),
            str(r["terminated"]),
            "yes" if r["one_per_group"] else "NO",
            str(r["exit"]),
        ]

    lines = []
    for tool in tools:
        mine = [r for r in rows if r["tool"] == tool]
        for r in mine:
            lines.append(fmt(r, r["run"]))
    # medians
    for tool in tools:
        mine = [r for r in rows if r["tool"] == tool]
        med = {
            "tool": tool,
            "wall_s": statistics.median(r["wall_s"] for r in mine),
            "rss_kib": statistics.median(r["rss_kib"] for r in mine),
            "cpu_s": statistics.median(r["cpu_s"] for r in mine),
            "moto_cpu_s": statistics.median(r["moto_cpu_s"] for r in mine),
            "requests": int(statistics.median(r["requests"] for r in mine)),
            "api_calls": None
            if any(r.get("api_calls") is None for r in mine)
            else int(statistics.median(r["api_calls"] for r in mine)),
            "done": None
            if any(r.get("done") is None for r in mine)
            else int(statistics.median(r["done"] for r in mine)),
            "terminated": int(statistics.median(r["terminated"] for r in mine)),
            "one_per_group": all(r["one_per_group"] for r in mine),
            "exit": max(r["exit"] for r in mine),
        }
        lines.append(fmt(med, "median"))
    widths = [max(len(c), *(len(l[i]) for l in lines)) for i, c in enumerate(cols)]

    def show(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    print(show(cols))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for l in lines:
        print(show(l))


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    cmd, arg = argv[1], argv[2]
    if cmd == "seed":
        seed(arg)
    elif cmd == "policy":
        policy(arg, argv[3])
    elif cmd == "experiment":
        experiment(arg)
    elif cmd == "verify":
        verify(arg)
    elif cmd == "table":
        table(arg)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
