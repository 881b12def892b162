//! The SNS operations on the wire (topics and subscriptions): each operation's request encoding and
//! decoding, in one place.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::*;

/// Encodes an SNS operation (`None`: not one).
pub(super) fn encode_op(fbb: &mut FlatBufferBuilder<'static>, op: &Op) -> Option<(fb::Op, WIPOffset<flatbuffers::UnionWIPOffset>)> {
    Some(match op {
        Op::CreateTopic { name, attributes, tags } => {
            let name = Some(fbb.create_string(name));
            let attributes = key_values(fbb, attributes);
            let tags = key_values(fbb, tags);
            op_table!(fbb, CreateTopic, fb::CreateTopicArgs { name, attributes, tags })
        }
        Op::DeleteTopic { topic } => {
            let topic = Some(fbb.create_string(topic));
            op_table!(fbb, DeleteTopic, fb::DeleteTopicArgs { topic })
        }
        Op::ListTopics { next_token } => {
            let next_token = opt_str(fbb, next_token);
            op_table!(fbb, ListTopics, fb::ListTopicsArgs { next_token })
        }
        Op::GetTopicAttributes { topic } => {
            let topic = Some(fbb.create_string(topic));
            op_table!(fbb, GetTopicAttributes, fb::GetTopicAttributesArgs { topic })
        }
        Op::SetTopicAttributes { topic, name, value } => {
            let topic = Some(fbb.create_string(topic));
            let name = Some(fbb.create_string(name));
            let value = opt_str(fbb, value);
            op_table!(fbb, SetTopicAttributes, fb::SetTopicAttributesArgs { topic, name, value })
        }
        Op::Subscribe { topic, protocol, endpoint, attributes, return_subscription_arn } => {
            let topic = Some(fbb.create_string(topic));
            let protocol = Some(fbb.create_string(protocol));
            let endpoint = opt_str(fbb, endpoint);
            let attributes = key_values(fbb, attributes);
            op_table!(
                fbb,
                Subscribe,
                fb::SubscribeArgs { topic, protocol, endpoint, attributes, return_subscription_arn: *return_subscription_arn }
            )
        }
        Op::ConfirmSubscription { topic, token, authenticate_on_unsubscribe } => {
            let topic = Some(fbb.create_string(topic));
            let token = Some(fbb.create_string(token));
            op_table!(
                fbb,
                ConfirmSubscription,
                fb::ConfirmSubscriptionArgs { topic, token, authenticate_on_unsubscribe: *authenticate_on_unsubscribe }
            )
        }
        Op::Unsubscribe { subscription } => {
            let subscription = Some(fbb.create_string(subscription));
            op_table!(fbb, Unsubscribe, fb::UnsubscribeArgs { subscription })
        }
        Op::ListSubscriptions { topic, next_token } => {
            let topic = opt_str(fbb, topic);
            let next_token = opt_str(fbb, next_token);
            op_table!(fbb, ListSubscriptions, fb::ListSubscriptionsArgs { topic, next_token })
        }
        Op::GetSubscriptionAttributes { subscription } => {
            let subscription = Some(fbb.create_string(subscription));
            op_table!(fbb, GetSubscriptionAttributes, fb::GetSubscriptionAttributesArgs { subscription })
        }
        Op::SetSubscriptionAttributes { subscription, name, value } => {
            let subscription = Some(fbb.create_string(subscription));
            let name = Some(fbb.create_string(name));
            let value = opt_str(fbb, value);
            op_table!(fbb, SetSubscriptionAttributes, fb::SetSubscriptionAttributesArgs { subscription, name, value })
        }
        Op::Publish { topic, entry } => {
            let topic = Some(fbb.create_string(topic));
            let entry = Some(publish_entry(fbb, entry));
            op_table!(fbb, Publish, fb::PublishArgs { topic, entry })
        }
        Op::PublishBatch { topic, entries } => {
            let topic = Some(fbb.create_string(topic));
            let offsets: Vec<_> = entries.iter().map(|entry| publish_entry(fbb, entry)).collect();
            let entries = Some(fbb.create_vector(&offsets));
            op_table!(fbb, PublishBatch, fb::PublishBatchArgs { topic, entries })
        }
        Op::AddTopicPermission { topic, label, account_ids, actions } => {
            let topic = Some(fbb.create_string(topic));
            let label = Some(fbb.create_string(label));
            let account_ids = strings(fbb, account_ids);
            let actions = strings(fbb, actions);
            op_table!(fbb, AddTopicPermission, fb::AddTopicPermissionArgs { topic, label, account_ids, actions })
        }
        Op::TagTopic { topic, tags } => {
            let topic = Some(fbb.create_string(topic));
            let tags = key_values(fbb, tags);
            op_table!(fbb, TagTopic, fb::TagTopicArgs { topic, tags })
        }
        Op::UntagTopic { topic, keys } => {
            let topic = Some(fbb.create_string(topic));
            let keys = strings(fbb, keys);
            op_table!(fbb, UntagTopic, fb::UntagTopicArgs { topic, keys })
        }
        Op::ListTopicTags { topic } => {
            let topic = Some(fbb.create_string(topic));
            op_table!(fbb, ListTopicTags, fb::ListTopicTagsArgs { topic })
        }
        Op::RemoveTopicPermission { topic, label } => {
            let topic = Some(fbb.create_string(topic));
            let label = Some(fbb.create_string(label));
            op_table!(fbb, RemoveTopicPermission, fb::RemoveTopicPermissionArgs { topic, label })
        }
        _ => return None,
    })
}

/// Decodes an SNS operation (`None`: not one).
pub(super) fn decode_op(
    request: &fb::Request<'_>,
    read: &Reader<'_>,
    unknown: &dyn Fn() -> DecodeError,
) -> Result<Option<Op>, DecodeError> {
    Ok(Some(match request.op_type() {
        fb::Op::CreateTopic => {
            let op = request.op_as_create_topic().ok_or_else(unknown)?;
            Op::CreateTopic { name: op.name().to_owned(), attributes: read.key_values(op.attributes()), tags: read.key_values(op.tags()) }
        }
        fb::Op::DeleteTopic => Op::DeleteTopic { topic: request.op_as_delete_topic().ok_or_else(unknown)?.topic().to_owned() },
        fb::Op::ListTopics => Op::ListTopics { next_token: owned(request.op_as_list_topics().ok_or_else(unknown)?.next_token()) },
        fb::Op::GetTopicAttributes => {
            Op::GetTopicAttributes { topic: request.op_as_get_topic_attributes().ok_or_else(unknown)?.topic().to_owned() }
        }
        fb::Op::SetTopicAttributes => {
            let op = request.op_as_set_topic_attributes().ok_or_else(unknown)?;
            Op::SetTopicAttributes { topic: op.topic().to_owned(), name: op.name().to_owned(), value: owned(op.value()) }
        }
        fb::Op::Subscribe => {
            let op = request.op_as_subscribe().ok_or_else(unknown)?;
            Op::Subscribe {
                topic: op.topic().to_owned(),
                protocol: op.protocol().to_owned(),
                endpoint: owned(op.endpoint()),
                attributes: read.key_values(op.attributes()),
                return_subscription_arn: op.return_subscription_arn(),
            }
        }
        fb::Op::ConfirmSubscription => {
            let op = request.op_as_confirm_subscription().ok_or_else(unknown)?;
            Op::ConfirmSubscription {
                topic: op.topic().to_owned(),
                token: op.token().to_owned(),
                authenticate_on_unsubscribe: op.authenticate_on_unsubscribe(),
            }
        }
        fb::Op::Unsubscribe => Op::Unsubscribe { subscription: request.op_as_unsubscribe().ok_or_else(unknown)?.subscription().to_owned() },
        fb::Op::ListSubscriptions => {
            let op = request.op_as_list_subscriptions().ok_or_else(unknown)?;
            Op::ListSubscriptions { topic: owned(op.topic()), next_token: owned(op.next_token()) }
        }
        fb::Op::GetSubscriptionAttributes => Op::GetSubscriptionAttributes {
            subscription: request.op_as_get_subscription_attributes().ok_or_else(unknown)?.subscription().to_owned(),
        },
        fb::Op::SetSubscriptionAttributes => {
            let op = request.op_as_set_subscription_attributes().ok_or_else(unknown)?;
            Op::SetSubscriptionAttributes {
                subscription: op.subscription().to_owned(),
                name: op.name().to_owned(),
                value: owned(op.value()),
            }
        }
        fb::Op::Publish => {
            let op = request.op_as_publish().ok_or_else(unknown)?;
            Op::Publish { topic: op.topic().to_owned(), entry: read.publish_entry(op.entry()) }
        }
        fb::Op::PublishBatch => {
            let op = request.op_as_publish_batch().ok_or_else(unknown)?;
            let entries = read
                .bounded(op.entries())
                .map(|entries| entries.iter().map(|entry| read.publish_entry(entry)).collect())
                .unwrap_or_default();
            Op::PublishBatch { topic: op.topic().to_owned(), entries }
        }
        fb::Op::AddTopicPermission => {
            let op = request.op_as_add_topic_permission().ok_or_else(unknown)?;
            Op::AddTopicPermission {
                topic: op.topic().to_owned(),
                label: op.label().to_owned(),
                account_ids: read.strings(op.account_ids()),
                actions: read.strings(op.actions()),
            }
        }
        fb::Op::TagTopic => {
            let op = request.op_as_tag_topic().ok_or_else(unknown)?;
            Op::TagTopic { topic: op.topic().to_owned(), tags: read.key_values(op.tags()) }
        }
        fb::Op::UntagTopic => {
            let op = request.op_as_untag_topic().ok_or_else(unknown)?;
            Op::UntagTopic { topic: op.topic().to_owned(), keys: read.strings(op.keys()) }
        }
        fb::Op::ListTopicTags => {
            let op = request.op_as_list_topic_tags().ok_or_else(unknown)?;
            Op::ListTopicTags { topic: op.topic().to_owned() }
        }
        fb::Op::RemoveTopicPermission => {
            let op = request.op_as_remove_topic_permission().ok_or_else(unknown)?;
            Op::RemoveTopicPermission { topic: op.topic().to_owned(), label: op.label().to_owned() }
        }
        _ => return Ok(None),
    }))
}
