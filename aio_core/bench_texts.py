"""The fixed comments the benchmark classifies: written for this project (not from any evaluation set), Chinese and
English, 10-150 characters, in the voices of students, customers and social-media commenters.

QWEN_TOKENS holds each text's token count under the real Qwen tokenizer (recorded once from the eval model's
tokenizer, Qwen2.5's, whose vocabulary Qwen1.5 shares), so the offline stand-in tokenizer can be checked against it.
"""

BENCH_TEXTS = (
    "今天的实验终于成功了，太棒了！",
    "这天气真糟糕，出门就被淋湿了",
    "老师讲得很清楚，我终于听懂了二次函数，谢谢老师！",
    "作业太多了，每天写到十二点，真的好累，不想上学了",
    "外卖送了一个半小时，汤都洒了，客服还一直推脱责任，再也不会点这家了。",
    "包装很精致，味道也很好，下次还会再来买的，推荐给大家",
    "今天被同学在群里嘲笑了，心里很难受，不知道该跟谁说",
    "周末和爸爸妈妈去爬山，山顶的风景特别美，拍了好多照片",
    "手机用了不到一周就黑屏了，申请售后三天都没人理，非常失望",
    "这家店的服务员很热情，菜上得也快，环境干净，价格实惠",
    "考试又没考好，感觉自己怎么努力都没用",
    "新来的班主任人很好，上课很有意思，大家都很喜欢她",
    "快递被放在门口淋了一夜的雨，里面的书全部泡坏了，物流公司连句道歉都没有，真的太气人了！",
    "比赛我们班拿了第一名！大家抱在一起哭了，太激动了",
    "软件更新以后就一直闪退，数据也丢了，到底有没有人测试过？",
    "谢谢你昨天陪我聊天，心情好多了",
    "排队两个小时，结果告诉我卖完了，浪费时间",
    "这本书写得真好，一口气读完了，强烈推荐",
    "室友每天半夜打游戏吵得我睡不着，说了好几次也不改，快崩溃了",
    "收到了朋友寄来的生日礼物，超级惊喜，好感动",
    "Finally passed my driving test today, so happy!",
    "The train was cancelled again and nobody told us anything. Third time this week.",
    "Thank you so much for helping me with the essay, I couldn't have done it without you",
    "I hate group projects. Nobody answers messages and I end up doing everything myself.",
    "Best pizza in town, the crust is perfect and the staff are lovely",
    "My order arrived broken and customer service just keeps sending me the same copy-paste reply.",
    "Had such a fun day at the beach with my cousins",
    "Nobody sat with me at lunch again today.",
    "The new update is amazing, everything loads so much faster now!",
    "Waited 45 minutes on hold just to be told to call back tomorrow. Ridiculous.",
    "So proud of my little brother, he scored the winning goal this afternoon",
    "I feel like I'm falling behind in every class and I don't know who to ask for help",
    "Great teacher, explains everything clearly and always answers questions",
    "This app keeps charging me twice for the same subscription, fix it or I'm leaving",
    "Can't wait for the school trip next week, it's going to be awesome",
    "Worst hotel ever: dirty sheets, broken shower, and the front desk was rude about it.",
    "lol that video made my whole day 😂😂",
    "ugh my laptop died right before the deadline 😤",
    "The concert last night was incredible, still can't believe we got front row tickets!!",
    "Honestly I'm tired of being ignored in the group chat. Whatever.",
)

# Recorded with: AutoTokenizer.from_pretrained(<eval model>)(text, add_special_tokens=False) for each text above.
QWEN_TOKENS = (10, 10, 16, 16, 23, 15, 17, 16, 18, 18, 11, 13, 28, 14, 18, 9, 10, 12, 21, 12,
               10, 16, 19, 16, 14, 18, 11, 9, 13, 21, 14, 20, 10, 17, 16, 20, 10, 10, 17, 14)
