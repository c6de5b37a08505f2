"""moto_server with one patch, for benches/aws_vs_chaostoolkit.sh (MOTO=indexed, the default).

Stock moto (5.x) looks up an EC2 resource's tags by scanning every tag in the region with a regex
(TaggedEC2Resource.get_tags -> describe_tags(filters={"resource-id": [id]})), and does it for every filter it
checks (even `instance-state-name`) and again for every instance it serializes. So DescribeInstances is
O(instances x tags): with 5,000 instances one unfiltered call takes ~25 s, with two filters ~38 s, and even
a call that filters down to one 100-instance group ~14 s. That measures moto, not the client. This patch
answers the same question from the per-resource dict moto already keeps (`backend.tags[id]`), with the
same result shape and order; nothing else changes. Usage: python moto_server_indexed_tags.py -H 127.0.0.1 -p PORT
"""

import sys

from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix


def get_tags(self):
    rid = getattr(self, "id", None)
    if not rid:
        return []
    tags = self.ec2_backend.tags.get(rid) or {}
    rtype = EC2_PREFIX_TO_RESOURCE.get(get_prefix(rid), "")
    return [{"resource_id": rid, "key": k, "value": v, "resource_type": rtype} for k, v in tags.items()]


TaggedEC2Resource.get_tags = get_tags

from moto.server import main  # noqa: E402  (after the patch)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
