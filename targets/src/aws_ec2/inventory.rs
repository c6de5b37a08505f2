//! The inventory: one paginated, tag-filtered DescribeInstances per region, as instances.

use super::*;

impl Ec2Target {
    /// Running instances carrying the opt-in tag, in every region of the target.
    pub async fn inventory(&self) -> Result<Vec<Instance>, TargetError> {
        let mut all = Vec::new();
        for region in &self.regions {
            let client = self.client(region).await.map_err(|f| f.target(&self.name, region))?;
            let mut pages = client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{}", self.opt_in.tag))
                        .values(&self.opt_in.value)
                        .build(),
                )
                .filters(Filter::builder().name("instance-state-name").values("running").build())
                .max_results(PAGE_SIZE)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| self.failure("DescribeInstances", region, &e).target(&self.name, region))?;
                for reservation in page.reservations() {
                    all.extend(reservation.instances().iter().filter_map(|i| self.instance(region, i)));
                }
            }
        }
        Ok(all)
    }

    /// Our view of an EC2 instance (`None` without an id).
    pub(super) fn instance(&self, region: &str, i: &Ec2Instance) -> Option<Instance> {
        let tags: BTreeMap<String, String> = i
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
            .collect();
        Some(Instance {
            target: self.name.clone(),
            id: i.instance_id()?.to_string(),
            address: i.private_ip_address().map(str::to_string),
            group: tags.get(&self.group_by).cloned().unwrap_or_default(),
            zone: i.placement().and_then(|p| p.availability_zone()).map(str::to_string),
            region: Some(region.to_string()),
            url: None,
            tags,
        })
    }
}
