//! Member-cluster kubeconfigs as the operator accepts them: self-contained, from a Secret.
//!
//! Contract: pure. [`parse`] reads the kubeconfig text of a Secret and refuses, with an error
//! naming the field, anything that would make the operator depend on its own file system or run
//! a program: a CA, client certificate, key or token given as a file path, an exec or
//! auth-provider plugin, or a cluster without an embedded CA (`certificate-authority-data`)
//! unless it says `insecure-skip-tls-verify`. The current context (or the only one) is used.

use kube::config::{Kubeconfig, NamedAuthInfo, NamedCluster};

/// Why a member kubeconfig was refused.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// Not a kubeconfig.
    #[error("is not a kubeconfig")]
    Parse(#[source] kube::config::KubeconfigError),
    /// No usable context.
    #[error("has no current-context and not exactly one context")]
    NoContext,
    /// The context names a cluster or user the file does not define.
    #[error("context {context:?} names {what} {name:?}, which the kubeconfig does not define")]
    Dangling {
        /// Context name.
        context: String,
        /// `cluster` or `user`.
        what: &'static str,
        /// The missing name.
        name: String,
    },
    /// A field refers to a file or a program on the operator's machine.
    #[error("{field} refers to {what}; a member kubeconfig must embed everything (use {instead})")]
    NotEmbedded {
        /// The kubeconfig field.
        field: &'static str,
        /// `a file` or `a program`.
        what: &'static str,
        /// The embedded alternative.
        instead: &'static str,
    },
    /// The cluster's CA is not embedded.
    #[error("cluster {0:?} has no certificate-authority-data: a member kubeconfig must embed the CA it trusts")]
    NoCa(String),
}

/// The kubeconfig of `text`, checked to be self-contained.
pub fn parse(text: &str) -> Result<Kubeconfig, KubeconfigError> {
    let config = Kubeconfig::from_yaml(text).map_err(KubeconfigError::Parse)?;
    let context_name = match (&config.current_context, config.contexts.as_slice()) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, [only]) => only.name.clone(),
        _ => return Err(KubeconfigError::NoContext),
    };
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone())
        .ok_or(KubeconfigError::NoContext)?;
    let dangling =
        |what, name: &str| KubeconfigError::Dangling { context: context_name.clone(), what, name: name.into() };
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .ok_or_else(|| dangling("cluster", &context.cluster))?;
    check_cluster(cluster)?;
    if let Some(user) = context.user.as_deref() {
        let info = config.auth_infos.iter().find(|u| u.name == user).ok_or_else(|| dangling("user", user))?;
        check_user(info)?;
    }
    let mut config = config;
    config.current_context = Some(context_name);
    Ok(config)
}

fn not_embedded(field: &'static str, what: &'static str, instead: &'static str) -> KubeconfigError {
    KubeconfigError::NotEmbedded { field, what, instead }
}

fn check_cluster(named: &NamedCluster) -> Result<(), KubeconfigError> {
    let Some(cluster) = named.cluster.as_ref() else { return Err(KubeconfigError::NoCa(named.name.clone())) };
    if cluster.certificate_authority.is_some() {
        return Err(not_embedded("certificate-authority", "a file", "certificate-authority-data"));
    }
    let insecure = cluster.insecure_skip_tls_verify == Some(true);
    if cluster.certificate_authority_data.as_deref().is_none_or(str::is_empty) && !insecure {
        return Err(KubeconfigError::NoCa(named.name.clone()));
    }
    Ok(())
}

fn check_user(named: &NamedAuthInfo) -> Result<(), KubeconfigError> {
    let Some(user) = named.auth_info.as_ref() else { return Ok(()) };
    if user.client_certificate.is_some() {
        return Err(not_embedded("client-certificate", "a file", "client-certificate-data"));
    }
    if user.client_key.is_some() {
        return Err(not_embedded("client-key", "a file", "client-key-data"));
    }
    if user.token_file.is_some() {
        return Err(not_embedded("tokenFile", "a file", "token"));
    }
    if user.exec.is_some() {
        return Err(not_embedded("exec", "a program", "a token or client-certificate-data"));
    }
    if user.auth_provider.is_some() {
        return Err(not_embedded("auth-provider", "a program", "a token or client-certificate-data"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n{cluster}users:\n- name: u\n  user:\n{user}contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        )
    }

    #[test]
    fn an_embedded_kubeconfig_is_accepted() {
        let text = config("    certificate-authority-data: Y2E=\n", "    token: abc\n");
        let parsed = parse(&text).expect("accepted");
        assert_eq!(parsed.current_context.as_deref(), Some("x"));
    }

    #[test]
    fn files_programs_and_missing_cas_are_refused_naming_the_field() {
        let ca = "    certificate-authority-data: Y2E=\n";
        let cases = [
            (
                config("    certificate-authority: /etc/ca.crt\n", "    token: a\n"),
                "certificate-authority refers to a file",
            ),
            (config(ca, "    client-certificate: /c.crt\n"), "client-certificate refers to a file"),
            (config(ca, "    client-key: /c.key\n"), "client-key refers to a file"),
            (config(ca, "    tokenFile: /t\n"), "tokenFile refers to a file"),
            (
                config(ca, "    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}\n"),
                "exec refers to a program",
            ),
            (config("", "    token: a\n"), "has no certificate-authority-data"),
        ];
        for (text, expected) in cases {
            let error = parse(&text).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(parse(&config("    insecure-skip-tls-verify: true\n", "    token: a\n")).is_ok());
        assert!(matches!(parse("not: [a kubeconfig"), Err(KubeconfigError::Parse(_))));
        let dangling = config(ca, "    token: a\n").replace("user: u}", "user: nobody}");
        assert!(parse(&dangling).expect_err("dangling").to_string().contains("\"nobody\""));
    }
}
