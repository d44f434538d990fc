//! `RUN --device=`: BuildKit's ParseDevice (frontend/dockerfile/instructions/commands_rundevice.go). A CSV
//! record: the first bare field (or `name=`) is the CDI device name, `required` (or `required=BOOL`) makes a
//! missing device an error; any other field is refused with a "did you mean" hint. A name such as
//! `vendor.com/gpu=all` holds an `=` of its own: a field whose key is not `name` or `required` is the name when
//! none was given yet, as there.

use llb::CdiDevice;

use super::mounts::split_csv;

/// The device a `--device` value asks for. Without `required`, a device that is not registered is skipped
/// (BuildKit's dispatchRunDevices marks it optional).
pub fn parse_device(value: &str) -> Result<CdiDevice, String> {
    let fields = split_csv(value).map_err(|e| format!("failed to parse csv devices: {e}"))?;
    let mut name = String::new();
    let mut required = false;
    for field in fields {
        let Some((key, v)) = field.split_once('=') else {
            if field.eq_ignore_ascii_case("required") {
                required = true;
            } else if name.is_empty() {
                name = field;
            } else {
                return Err(format!("invalid field '{field}' must be a key=value pair"));
            }
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "name" => {
                if !name.is_empty() {
                    return Err(format!("device name already set to {name}"));
                }
                name = v.to_string();
            }
            "required" => {
                required =
                    parse_bool(v).ok_or_else(|| format!("invalid value for required: {v}"))?;
            }
            other => {
                if name.is_empty() {
                    name = field.clone();
                    continue;
                }
                return Err(format!(
                    "unexpected key '{other}' in '{field}'{}",
                    crate::suggest::hint(other, ["name", "required"])
                ));
            }
        }
    }
    if name.is_empty() {
        return Err(format!("no device name in '{value}'"));
    }
    Ok(CdiDevice {
        name,
        optional: !required,
    })
}

/// Go's strconv.ParseBool.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, optional: bool) -> CdiDevice {
        CdiDevice {
            name: name.to_string(),
            optional,
        }
    }

    #[test]
    fn names_and_required_as_buildkit_parses_them() {
        assert_eq!(
            parse_device("vendor.com/class=name").unwrap(),
            dev("vendor.com/class=name", true)
        );
        assert_eq!(
            parse_device("vendor.com/class=name,required").unwrap(),
            dev("vendor.com/class=name", false)
        );
        assert_eq!(
            parse_device("name=vendor.com/gpu=all,required=true").unwrap(),
            dev("vendor.com/gpu=all", false)
        );
        assert_eq!(
            parse_device("vendor.com/gpu,required=false").unwrap(),
            dev("vendor.com/gpu", true)
        );
        assert_eq!(
            parse_device("\"vendor.com/gpu=a,b\"").unwrap(),
            dev("vendor.com/gpu=a,b", true)
        );
        assert_eq!(
            parse_device("a.com/x=1,name=b.com/y=2").unwrap_err(),
            "device name already set to a.com/x=1"
        );
        assert_eq!(
            parse_device("a.com/x=1,other").unwrap_err(),
            "invalid field 'other' must be a key=value pair"
        );
        assert_eq!(
            parse_device("a.com/x=1,required=maybe").unwrap_err(),
            "invalid value for required: maybe"
        );
        assert_eq!(
            parse_device("a.com/x=1,requird=true").unwrap_err(),
            "unexpected key 'requird' in 'requird=true' (did you mean required?)"
        );
    }
}
