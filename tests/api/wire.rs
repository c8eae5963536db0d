//! Requests as bytes: a client that sends any body to any method, and the
//! descriptor of every RPC, so tests can walk the whole API without
//! naming each message.

use std::str::FromStr;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{WireType, encode_key, encode_varint};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Status};

#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// Sends `body` to `path` (`/authz.v1.UserService/CreateUser`) with the
/// given metadata.
pub async fn call(
    channel: &Channel,
    path: &str,
    body: Vec<u8>,
    metadata: &[(&'static str, String)],
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = Request::new(body);
    for (name, value) in metadata {
        match value.parse() {
            Ok(value) => {
                request.metadata_mut().insert(*name, value);
            }
            Err(_) => return Err(Status::cancelled("metadata not sendable")),
        }
    }
    let path = PathAndQuery::from_str(path).unwrap();
    grpc.unary(request, path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

pub struct Method {
    /// `/authz.v1.UserService/CreateUser`
    pub path: String,
    pub service: String,
    pub input: String,
}

pub struct Api {
    set: FileDescriptorSet,
}

impl Api {
    pub fn load() -> Self {
        Self {
            set: FileDescriptorSet::decode(authzd::pb::FILE_DESCRIPTOR_SET).unwrap(),
        }
    }

    pub fn methods(&self) -> Vec<Method> {
        let mut out = Vec::new();
        for file in &self.set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    out.push(Method {
                        path: format!("/{full}/{}", method.name()),
                        service: service.name().to_owned(),
                        input: method.input_type().trim_start_matches('.').to_owned(),
                    });
                }
            }
        }
        out
    }

    pub fn message(&self, full_name: &str) -> Option<&DescriptorProto> {
        self.set.file.iter().find_map(|file| {
            file.message_type
                .iter()
                .find(|m| format!("{}.{}", file.package(), m.name()) == full_name)
        })
    }

    /// Every string field reachable from `message` (through nested
    /// messages), as (wire path, encoding of a message with only that
    /// field set to `value`).
    pub fn string_fields(&self, message: &str, value: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let Some(descriptor) = self.message(message) else {
            return out;
        };
        for field in &descriptor.field {
            let number = u32::try_from(field.number()).unwrap();
            let name = match field.label() {
                Label::Repeated => format!("{}[0]", field.name()),
                _ => field.name().to_owned(),
            };
            match field.r#type() {
                Type::String => out.push((name, length_delimited(number, value))),
                Type::Message => {
                    let nested = field.type_name().trim_start_matches('.');
                    for (path, bytes) in self.string_fields(nested, value) {
                        out.push((format!("{name}.{path}"), length_delimited(number, &bytes)));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

pub fn length_delimited(number: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(number, WireType::LengthDelimited, &mut out);
    encode_varint(value.len() as u64, &mut out);
    out.extend_from_slice(value);
    out
}

pub fn varint(number: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(number, WireType::Varint, &mut out);
    encode_varint(value, &mut out);
    out
}

/// A field's number, for generators.
pub fn number(field: &FieldDescriptorProto) -> u32 {
    u32::try_from(field.number()).unwrap()
}
