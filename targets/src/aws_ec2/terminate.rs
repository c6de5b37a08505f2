//! Terminating: TerminateInstances in batches per region, one by one when a batch fails on an id.

use super::*;

impl Ec2Target {
    /// Terminates one instance.
    pub async fn terminate(&self, inst: &Instance) -> Result<String, ActionError> {
        self.terminate_many(std::slice::from_ref(inst))
            .await
            .pop()
            .unwrap_or_else(|| Err(ActionError("no result".into())))
    }

    /// Terminates instances with TerminateInstances, `terminate_batch` per call and region; one result per
    /// instance, in order. When a batch fails because of an unknown instance id, its instances are retried one
    /// by one so that the others are still terminated.
    pub async fn terminate_many(&self, insts: &[Instance]) -> Vec<Result<String, ActionError>> {
        let mut out: Vec<Option<Result<String, ActionError>>> = vec![None; insts.len()];
        let mut by_region: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, inst) in insts.iter().enumerate() {
            match self.region_of(inst) {
                Ok(region) => match by_region.iter_mut().find(|(r, _)| *r == region) {
                    Some((_, idxs)) => idxs.push(i),
                    None => by_region.push((region, vec![i])),
                },
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        for (region, idxs) in by_region {
            let client = match self.client(&region).await {
                Ok(c) => c,
                Err(f) => {
                    for &i in &idxs {
                        out[i] = Some(Err(f.clone().action()));
                    }
                    continue;
                }
            };
            for chunk in idxs.chunks(self.terminate_batch) {
                let ids: Vec<String> = chunk.iter().map(|&i| insts[i].id.clone()).collect();
                let results = self.terminate_ids(&client, &region, &ids).await;
                for (&i, result) in chunk.iter().zip(results) {
                    if result.is_ok() {
                        let inst = &insts[i];
                        info!(target_name = %self.name, instance = %inst.id, group = %inst.group, region = %region, "terminated instance");
                    }
                    out[i] = Some(result);
                }
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(ActionError("not attempted".into())))).collect()
    }

    pub(super) async fn terminate_ids(
        &self,
        client: &Client,
        region: &str,
        ids: &[String],
    ) -> Vec<Result<String, ActionError>> {
        match self.terminate_call(client, region, ids).await {
            Ok(results) => results,
            Err(f) if ids.len() > 1 && f.code().is_some_and(|c| c.starts_with("InvalidInstanceID")) => {
                warn!(target_name = %self.name, region = %region, error = %f.clone().action(), "a batch failed on an instance id; terminating one by one");
                let mut results = Vec::with_capacity(ids.len());
                for id in ids {
                    results.push(match self.terminate_call(client, region, std::slice::from_ref(id)).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| Err(ActionError("no result".into()))),
                        Err(f) => Err(f.action()),
                    });
                }
                results
            }
            Err(f) => ids.iter().map(|_| Err(f.clone().action())).collect(),
        }
    }

    pub(super) async fn terminate_call(
        &self,
        client: &Client,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<Result<String, ActionError>>, Failure> {
        let out = client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| self.failure("TerminateInstances", region, &e))?;
        let changes = out.terminating_instances();
        Ok(ids
            .iter()
            .map(|id| {
                let change =
                    changes.iter().find(|c| c.instance_id() == Some(id.as_str())).ok_or_else(|| {
                        ActionError(format!("TerminateInstances did not report instance `{id}`"))
                    })?;
                let state = |s: Option<&aws_sdk_ec2::types::InstanceState>| {
                    s.and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_else(|| "?".into())
                };
                Ok(format!(
                    "TerminateInstances in {region}: {} → {}",
                    state(change.previous_state()),
                    state(change.current_state())
                ))
            })
            .collect())
    }
}
