//! Isolation: the per-VPC deny-all security group simian manages, swapped in and back out exactly.

use super::*;

impl Ec2Target {
    /// Reads the instance's security groups and finds (or creates) the deny-all isolation group of its VPC.
    pub async fn prepare_isolation(&self, inst: &Instance) -> Result<Undo, ActionError> {
        let region = self.region_of(inst)?;
        let client = self.client(&region).await.map_err(Failure::action)?;
        let out = client
            .describe_instances()
            .instance_ids(&inst.id)
            .send()
            .await
            .map_err(|e| self.failure("DescribeInstances", &region, &e).action())?;
        let Some(ec2) =
            out.reservations().iter().flat_map(|r| r.instances()).find(|i| i.instance_id() == Some(&inst.id))
        else {
            return Err(ActionError(format!("instance `{}` not found in {region}", inst.id)));
        };
        if let Some(state) = ec2.state().and_then(|s| s.name()) {
            if matches!(state.as_str(), "shutting-down" | "terminated") {
                return Err(ActionError(format!("instance `{}` is {}", inst.id, state.as_str())));
            }
        }
        let Some(vpc) = ec2.vpc_id() else {
            return Err(ActionError(format!("instance `{}` is not in a VPC", inst.id)));
        };
        if ec2.network_interfaces().len() > 1 {
            return Err(ActionError(format!(
                "instance `{}` has {} network interfaces; isolation swaps only the instance's (primary interface's) \
                 security groups, so it would stay reachable: refusing",
                inst.id,
                ec2.network_interfaces().len()
            )));
        }
        let isolation_group = self.isolation_group_id(&client, &region, vpc).await?;
        let groups: Vec<String> = ec2
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .filter(|g| *g != isolation_group)
            .map(str::to_string)
            .collect();
        if groups.is_empty() {
            return Err(ActionError(format!(
                "instance `{}` has no security group but the isolation group `{isolation_group}`: already isolated",
                inst.id
            )));
        }
        Ok(Undo::Ec2Groups { region, instance_id: inst.id.clone(), groups, isolation_group })
    }

    /// The id of the isolation group in `vpc`, created (tagged, with no rules) when missing.
    pub(super) async fn isolation_group_id(
        &self,
        client: &Client,
        region: &str,
        vpc: &str,
    ) -> Result<String, ActionError> {
        if let Some(sg) = self.find_isolation_group(client, region, vpc).await? {
            return self.ensure_empty(client, region, &sg).await;
        }
        let created = client
            .create_security_group()
            .group_name(&self.isolation_group)
            .description(ISOLATION_DESCRIPTION)
            .vpc_id(vpc)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .tags(Tag::builder().key(MANAGED_TAG).value("true").build())
                    .build(),
            )
            .send()
            .await;
        match created {
            Ok(out) => {
                let id = out.group_id().unwrap_or_default().to_string();
                info!(target_name = %self.name, region = %region, vpc = %vpc, group = %id, "created isolation security group");
            }
            // Someone created it between our look and our create: use theirs (checked below).
            Err(e) if e.code() == Some("InvalidGroup.Duplicate") => {}
            Err(e) => return Err(self.failure("CreateSecurityGroup", region, &e).action()),
        }
        match self.find_isolation_group(client, region, vpc).await? {
            Some(sg) => self.ensure_empty(client, region, &sg).await,
            None => Err(ActionError(format!(
                "created security group `{}` in {vpc} but cannot find it again",
                self.isolation_group
            ))),
        }
    }

    /// The isolation group of `vpc`, if it exists; an untagged group of that name is an error, never used.
    pub(super) async fn find_isolation_group(
        &self,
        client: &Client,
        region: &str,
        vpc: &str,
    ) -> Result<Option<SecurityGroup>, ActionError> {
        let out = client
            .describe_security_groups()
            .filters(Filter::builder().name("group-name").values(&self.isolation_group).build())
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .map_err(|e| self.failure("DescribeSecurityGroups", region, &e).action())?;
        let Some(sg) = out.security_groups().iter().find(|g| g.group_name() == Some(&self.isolation_group))
        else {
            return Ok(None);
        };
        let managed = sg.tags().iter().any(|t| t.key() == Some(MANAGED_TAG) && t.value() == Some("true"));
        if !managed {
            return Err(ActionError(format!(
                "security group `{}` ({}) in {vpc} is not tagged {MANAGED_TAG}=true; simian isolates only with a group \
                 it created: delete or rename it, or set `isolation_group`",
                self.isolation_group,
                sg.group_id().unwrap_or_default()
            )));
        }
        Ok(Some(sg.clone()))
    }

    /// Revokes every ingress and egress rule of `sg` (a new group comes with an allow-all egress rule); its id.
    pub(super) async fn ensure_empty(
        &self,
        client: &Client,
        region: &str,
        sg: &SecurityGroup,
    ) -> Result<String, ActionError> {
        let id = sg.group_id().unwrap_or_default().to_string();
        let ingress: Vec<IpPermission> = sg.ip_permissions().to_vec();
        let egress: Vec<IpPermission> = sg.ip_permissions_egress().to_vec();
        if !ingress.is_empty() {
            client
                .revoke_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(ingress))
                .send()
                .await
                .map_err(|e| self.failure("RevokeSecurityGroupIngress", region, &e).action())?;
        }
        if !egress.is_empty() {
            client
                .revoke_security_group_egress()
                .group_id(&id)
                .set_ip_permissions(Some(egress))
                .send()
                .await
                .map_err(|e| self.failure("RevokeSecurityGroupEgress", region, &e).action())?;
        }
        Ok(id)
    }

    /// Replaces the instance's security groups with the isolation group recorded in `undo`.
    pub async fn isolate(&self, inst: &Instance, undo: &Undo) -> Result<String, ActionError> {
        let Undo::Ec2Groups { region, instance_id, groups, isolation_group } = undo else {
            return Err(ActionError(format!(
                "target `{}` cannot isolate with a hosts undo record",
                self.name
            )));
        };
        if *instance_id != inst.id {
            return Err(ActionError(format!(
                "undo record is for instance `{instance_id}`, not `{}`",
                inst.id
            )));
        }
        self.set_groups(region, instance_id, std::slice::from_ref(isolation_group)).await?;
        info!(target_name = %self.name, instance = %inst.id, region = %region, group = %isolation_group, "isolated instance");
        Ok(format!("replaced security groups {} with {isolation_group}", groups.join(", ")))
    }

    /// Puts back the security groups recorded in `undo`; repeating it is harmless.
    pub async fn restore(&self, undo: &Undo) -> Result<String, ActionError> {
        let (region, instance_id, groups, isolation_group) = match undo {
            Undo::Ec2Groups { region, instance_id, groups, isolation_group } => {
                (region, instance_id, groups, isolation_group)
            }
            Undo::HostsCommand { .. } => {
                return Err(ActionError(format!("target `{}` cannot restore a hosts undo record", self.name)))
            }
            Undo::Netem { .. } => {
                return Err(ActionError(format!(
                    "target `{}` (aws_ec2) cannot remove a netem qdisc: it cannot run commands on instances",
                    self.name
                )))
            }
        };
        self.set_groups(region, instance_id, groups).await?;
        info!(target_name = %self.name, instance = %instance_id, region = %region, "restored instance");
        Ok(format!("restored security groups {} (replacing {isolation_group})", groups.join(", ")))
    }

    pub(super) async fn set_groups(
        &self,
        region: &str,
        instance_id: &str,
        groups: &[String],
    ) -> Result<(), ActionError> {
        let client = self.client(region).await.map_err(Failure::action)?;
        client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .set_groups(Some(groups.to_vec()))
            .send()
            .await
            .map_err(|e| self.failure("ModifyInstanceAttribute", region, &e).action())?;
        Ok(())
    }
}
